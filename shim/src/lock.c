/* The shim's one mutex: guards the placement table, the budgets and the stats record. Its own unit so
 * that placement and stats both depend on it and not on each other. */
#include "shim.h"

pthread_mutex_t sw_lock = PTHREAD_MUTEX_INITIALIZER;
