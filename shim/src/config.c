/* SPILLWAY_* environment, placement rules and logging. */
#include "shim.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sw_config sw_cfg = {
    .reserve = 1ull << 30,
    .reserve_allocs = 4,
    .min_spill = 32ull << 20,
    .report_mode = SPILLWAY_REPORT_VRAM_HOST,
    .backing = SPILLWAY_BACKING_AUTO,
    .log_level = SW_LOG_WARN,
    .stats_dir = "/dev/shm",
    .kmod_device = "/dev/spillway",
};

void sw_log(int level, const char *fmt, ...) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "spillway[%d] %s: ", (int)getpid(), names[level & 3]);
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  /* One write per line so lines of concurrent threads do not interleave. */
  ssize_t w = write(2, buf, (size_t)n);
  (void)w;
}

/* "12G", "512M", "4096K", "1.5G", "123" (bytes); K/M/G/T are powers of 1024; an optional B/iB. */
int sw_parse_size(const char *s, uint64_t *out) {
  if (!s) return -1;
  while (isspace((unsigned char)*s)) s++;
  if (!isdigit((unsigned char)*s)) return -1;
  errno = 0;
  char *end;
  unsigned long long whole = strtoull(s, &end, 10);
  if (errno) return -1;
  /* Decimal digits only: strtod would also take an exponent ("1.5e9G") or hex. */
  double frac = 0, scale = 0.1;
  if (*end == '.') {
    end++;
    if (!isdigit((unsigned char)*end)) return -1;
    for (; isdigit((unsigned char)*end); end++, scale /= 10) frac += (*end - '0') * scale;
  }
  uint64_t mul = 1;
  switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1ull << 10; end++; break;
    case 'M': mul = 1ull << 20; end++; break;
    case 'G': mul = 1ull << 30; end++; break;
    case 'T': mul = 1ull << 40; end++; break;
    default: break;
  }
  if (mul > 1 && *end == 'i') end++;
  if (toupper((unsigned char)*end) == 'B') end++;
  while (isspace((unsigned char)*end)) end++;
  if (*end) return -1;
  if (whole > UINT64_MAX / mul) return -1;
  /* frac < 1, but .999... rounds to 1.0 in a double: keep the part below mul so the sum cannot wrap. */
  uint64_t part = (uint64_t)(frac * (double)mul);
  if (part >= mul) part = mul - 1;
  if ((uint64_t)whole * mul > UINT64_MAX - part) return -1;
  *out = (uint64_t)whole * mul + part;
  return 0;
}

static void size_var(const char *name, uint64_t *dst, int *has) {
  const char *v = getenv(name);
  if (!v || !*v) return;
  uint64_t x;
  if (sw_parse_size(v, &x)) {
    SW_ERROR("%s=%s: not a size (use 12G, 512M, 4096K or bytes); keeping the default", name, v);
    return;
  }
  *dst = x;
  if (has) *has = 1;
}

static void count_var(const char *name, uint64_t *dst) {
  const char *v = getenv(name);
  if (!v || !*v) return;
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno || end == v || *end || !isdigit((unsigned char)*v)) {
    SW_ERROR("%s=%s: not a count (a whole number such as 4); keeping the default", name, v);
    return;
  }
  *dst = x;
}

static uint64_t mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  fclose(f);
  return (uint64_t)kb * 1024;
}

/* `nth=K` matchers, beside sw_cfg.rules (same positions): a rule with one matches only the K-th
 * allocation (from 0) of those its size matchers accept. PyTorch's `model.to("cuda")` makes one
 * allocation per large tensor in module order, so "the 3rd allocation of at least 32 MiB" names a
 * tensor where a global index would also count the allocator's small segments. */
struct sw_nth {
  int has;
  uint64_t nth;
  uint64_t seen; /* allocations its size matchers accepted so far (atomic) */
};
static struct sw_nth *rule_nth;

/* One rule line: matchers (index=N nth=K size=S min=S max=S or *) then an action (vram, host, head=S, auto). */
static int parse_rule(char *line, struct sw_rule *r, struct sw_nth *nth) {
  memset(r, 0, sizeof *r);
  memset(nth, 0, sizeof *nth);
  int have_action = 0;
  for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
    if (have_action) return -1;
    if (!strcmp(tok, "*")) continue;
    char *eq = strchr(tok, '=');
    if (!eq) {
      if (!strcmp(tok, "vram")) r->action = SW_ACT_VRAM;
      else if (!strcmp(tok, "host")) r->action = SW_ACT_HOST;
      else if (!strcmp(tok, "auto")) r->action = SW_ACT_AUTO;
      else return -1;
      have_action = 1;
      continue;
    }
    *eq = 0;
    const char *key = tok, *val = eq + 1;
    uint64_t x;
    if (!strcmp(key, "index") || !strcmp(key, "nth")) {
      char *end;
      errno = 0;
      x = strtoull(val, &end, 10);
      if (errno || *end || !isdigit((unsigned char)*val)) return -1;
      if (key[0] == 'i') r->has_index = 1, r->index = x;
      else nth->has = 1, nth->nth = x;
    } else {
      if (sw_parse_size(val, &x)) return -1;
      if (!strcmp(key, "size")) r->has_size = 1, r->size = x;
      else if (!strcmp(key, "min")) r->has_min = 1, r->min = x;
      else if (!strcmp(key, "max")) r->has_max = 1, r->max = x;
      else if (!strcmp(key, "head")) r->action = SW_ACT_HEAD, r->head = x, have_action = 1;
      else return -1;
    }
  }
  return have_action ? 0 : -1;
}

static void add_rules(const char *text, const char *origin, char sep) {
  char *copy = strdup(text);
  if (!copy) return;
  int lineno = 0;
  for (char *save = NULL, *line = strtok_r(copy, sep == ';' ? ";\n" : "\n", &save); line;
       line = strtok_r(NULL, sep == ';' ? ";\n" : "\n", &save)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) continue;
    char orig[256];
    snprintf(orig, sizeof orig, "%s", p);
    struct sw_rule r;
    struct sw_nth n;
    if (parse_rule(p, &r, &n)) {
      SW_ERROR("%s:%d: bad placement rule '%s' (want: [index=N] [nth=K] [size=S] [min=S] [max=S] vram|host|head=S|auto); ignored",
               origin, lineno, orig);
      continue;
    }
    struct sw_nth *grown_nth = realloc(rule_nth, sizeof *grown_nth * (size_t)(sw_cfg.nrules + 1));
    if (!grown_nth) break;
    rule_nth = grown_nth;
    struct sw_rule *grown = realloc(sw_cfg.rules, sizeof *grown * (size_t)(sw_cfg.nrules + 1));
    if (!grown) break;
    sw_cfg.rules = grown;
    rule_nth[sw_cfg.nrules] = n;
    sw_cfg.rules[sw_cfg.nrules++] = r;
  }
  free(copy);
}

static void load_placement_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    SW_ERROR("SPILLWAY_PLACEMENT=%s: cannot open (%s); using the default policy", path, strerror(errno));
    return;
  }
  size_t cap = 4096, len = 0;
  char *text = malloc(cap);
  size_t n;
  while (text && (n = fread(text + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      char *g = realloc(text, cap * 2);
      if (!g) break;
      text = g, cap *= 2;
    }
  }
  fclose(f);
  if (!text) return;
  text[len] = 0;
  add_rules(text, path, '\n');
  free(text);
}

/* Called once per allocation. Every rule with `nth` counts the allocations its size matchers accept,
 * whether or not an earlier rule decides, so a rule's count does not depend on the rules above it. */
const struct sw_rule *sw_rule_match(uint64_t index, uint64_t size) {
  const struct sw_rule *found = NULL;
  for (int i = 0; i < sw_cfg.nrules; i++) {
    const struct sw_rule *r = &sw_cfg.rules[i];
    if (r->has_size && r->size != size) continue;
    if (r->has_min && size < r->min) continue;
    if (r->has_max && size > r->max) continue;
    int ok = !(r->has_index && r->index != index);
    if (rule_nth && rule_nth[i].has) {
      uint64_t n = __atomic_fetch_add(&rule_nth[i].seen, 1, __ATOMIC_RELAXED);
      ok = ok && n == rule_nth[i].nth;
    }
    if (ok && !found) found = r;
  }
  return found;
}

void sw_config_load(void) {
  const char *v;
  if ((v = getenv("SPILLWAY_LOG")) && *v) {
    if (!strcmp(v, "error")) sw_cfg.log_level = SW_LOG_ERROR;
    else if (!strcmp(v, "warn")) sw_cfg.log_level = SW_LOG_WARN;
    else if (!strcmp(v, "info")) sw_cfg.log_level = SW_LOG_INFO;
    else if (!strcmp(v, "debug")) sw_cfg.log_level = SW_LOG_DEBUG;
    else SW_ERROR("SPILLWAY_LOG=%s: want error, warn, info or debug; using warn", v);
  }
  if ((v = getenv("SPILLWAY_DISABLE")) && !strcmp(v, "1")) sw_cfg.disabled = 1;
  size_var("SPILLWAY_VRAM_BUDGET", &sw_cfg.budget, &sw_cfg.has_budget);
  size_var("SPILLWAY_RESERVE", &sw_cfg.reserve, NULL);
  count_var("SPILLWAY_RESERVE_ALLOCS", &sw_cfg.reserve_allocs);
  size_var("SPILLWAY_MIN_SPILL", &sw_cfg.min_spill, NULL);
  int has_host = 0;
  size_var("SPILLWAY_HOST_LIMIT", &sw_cfg.host_limit, &has_host);
  if (!has_host) sw_cfg.host_limit = mem_available() / 10 * 8;
  if ((v = getenv("SPILLWAY_REPORT")) && *v) {
    if (!strcmp(v, "vram")) sw_cfg.report_mode = SPILLWAY_REPORT_VRAM;
    else if (!strcmp(v, "vram+host")) sw_cfg.report_mode = SPILLWAY_REPORT_VRAM_HOST;
    else if (!sw_parse_size(v, &sw_cfg.report_size)) sw_cfg.report_mode = SPILLWAY_REPORT_SIZE;
    else SW_ERROR("SPILLWAY_REPORT=%s: want vram, vram+host or a size; using vram+host", v);
  }
  if ((v = getenv("SPILLWAY_BACKING")) && *v) {
    if (!strcmp(v, "auto")) sw_cfg.backing = SPILLWAY_BACKING_AUTO;
    else if (!strcmp(v, "kmod")) sw_cfg.backing = SPILLWAY_BACKING_KMOD;
    else if (!strcmp(v, "vmm")) sw_cfg.backing = SPILLWAY_BACKING_VMM;
    else if (!strcmp(v, "mapped")) sw_cfg.backing = SPILLWAY_BACKING_MAPPED;
    else SW_ERROR("SPILLWAY_BACKING=%s: want auto, kmod, vmm or mapped; using auto", v);
  }
  if ((v = getenv("SPILLWAY_STATS_DIR")) && *v) snprintf(sw_cfg.stats_dir, sizeof sw_cfg.stats_dir, "%s", v);
  if ((v = getenv("SPILLWAY_KMOD_DEVICE")) && *v) snprintf(sw_cfg.kmod_device, sizeof sw_cfg.kmod_device, "%s", v);
  if ((v = getenv("SPILLWAY_PLACEMENT")) && *v) load_placement_file(v);
  if ((v = getenv("SPILLWAY_PLACEMENT_RULES")) && *v) add_rules(v, "SPILLWAY_PLACEMENT_RULES", ';');
}
