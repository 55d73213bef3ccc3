// SPDX-License-Identifier: MIT
/*
 * uapi_layout - prints, as JSON, what the C compiler makes of kmod/include/uapi/spillway.h: struct
 * sizes, every member's offset/size/signedness, the constants and ioctl numbers, and a checksum of
 * a fixed pattern. test/kmod_uapi.test.ts compares it with kmod/uapi.ts.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "uapi/spillway.h"

static int first_struct = 1, first_field;

static void begin_struct(const char *name, size_t size)
{
	printf("%s\n  \"%s\": { \"size\": %zu, \"fields\": {", first_struct ? "" : ",", name, size);
	first_struct = 0;
	first_field = 1;
}

static void field(const char *name, size_t offset, size_t elem, size_t count, int is_signed)
{
	printf("%s\n    \"%s\": { \"offset\": %zu, \"elem\": %zu, \"count\": %zu, \"signed\": %s }",
	       first_field ? "" : ",", name, offset, elem, count, is_signed ? "true" : "false");
	first_field = 0;
}

#define S(s) begin_struct(#s, sizeof(struct s))
#define E() printf(" } }")
/* scalar member */
#define F(s, m) field(#m, offsetof(struct s, m), sizeof(((struct s *)0)->m), 0, \
		      (__typeof__(((struct s *)0)->m))-1 < 0)
/* array member */
#define A(s, m) field(#m, offsetof(struct s, m), sizeof(((struct s *)0)->m[0]), \
		      sizeof(((struct s *)0)->m) / sizeof(((struct s *)0)->m[0]), \
		      (__typeof__(((struct s *)0)->m[0]))-1 < 0)

int main(void)
{
	unsigned char pattern[4096];
	size_t i;

	printf("{ \"structs\": {");
	S(spillway_version);
	F(spillway_version, version); F(spillway_version, chunk_order); F(spillway_version, chunk_size);
	F(spillway_version, max_alloc_bytes); F(spillway_version, debug_ioctls);
	F(spillway_version, pad0); F(spillway_version, reserved);
	E();
	S(spillway_alloc);
	F(spillway_alloc, size); F(spillway_alloc, flags); F(spillway_alloc, fd);
	F(spillway_alloc, buffer_id); F(spillway_alloc, nr_chunks); F(spillway_alloc, min_order);
	A(spillway_alloc, reserved);
	E();
	S(spillway_pool_info);
	F(spillway_pool_info, flags); F(spillway_pool_info, pressure);
	F(spillway_pool_info, limit_bytes); F(spillway_pool_info, used_bytes);
	F(spillway_pool_info, peak_bytes); F(spillway_pool_info, buffers);
	F(spillway_pool_info, allocs_total); F(spillway_pool_info, frees_total);
	F(spillway_pool_info, failed_total); F(spillway_pool_info, mem_available_bytes);
	F(spillway_pool_info, pressure_events); A(spillway_pool_info, chunks);
	A(spillway_pool_info, reserved);
	E();
	S(spillway_set_limit);
	F(spillway_set_limit, limit_bytes); F(spillway_set_limit, old_limit_bytes);
	A(spillway_set_limit, reserved);
	E();
	S(spillway_debug_check);
	F(spillway_debug_check, fd); F(spillway_debug_check, flags);
	F(spillway_debug_check, sg_nents); F(spillway_debug_check, sg_bytes);
	F(spillway_debug_check, sg_chunks_ok); F(spillway_debug_check, csum_sg);
	F(spillway_debug_check, csum_vmap); A(spillway_debug_check, reserved);
	E();
	S(spillway_debug_pin);
	F(spillway_debug_pin, addr); F(spillway_debug_pin, length); F(spillway_debug_pin, fd);
	F(spillway_debug_pin, flags); F(spillway_debug_pin, pinned); F(spillway_debug_pin, matched);
	A(spillway_debug_pin, reserved);
	E();
	printf(" },\n \"ioctl\": { \"VERSION\": %u, \"ALLOC\": %u, \"POOL_INFO\": %u, \"SET_LIMIT\": %u,"
	       " \"DEBUG_CHECK\": %u, \"DEBUG_PIN\": %u },\n",
	       (unsigned)SPILLWAY_IOC_VERSION, (unsigned)SPILLWAY_IOC_ALLOC,
	       (unsigned)SPILLWAY_IOC_POOL_INFO, (unsigned)SPILLWAY_IOC_SET_LIMIT,
	       (unsigned)SPILLWAY_IOC_DEBUG_CHECK, (unsigned)SPILLWAY_IOC_DEBUG_PIN);
	/* 64-bit values as strings: JSON numbers lose precision past 2^53 */
	printf(" \"const\": { \"UAPI_VERSION\": %u, \"UAPI_VERSION_MAJOR\": %u, \"UAPI_VERSION_MINOR\": %u,"
	       " \"CHUNK_ORDER\": %u, \"CHUNK_SIZE\": \"%llu\", \"NR_ORDERS\": %u,"
	       " \"MAX_ALLOC_BYTES\": \"%llu\", \"ALLOC_FALLBACK\": %u, \"ALLOC_FLAGS_ALL\": %u,"
	       " \"PRESSURE_NONE\": %u, \"PRESSURE_MODERATE\": %u, \"PRESSURE_CRITICAL\": %u,"
	       " \"IOC_MAGIC\": %u, \"CSUM_INIT\": \"%llu\", \"DEVICE_PATH\": \"%s\", \"SYSFS_DIR\": \"%s\" },\n",
	       SPILLWAY_UAPI_VERSION, SPILLWAY_UAPI_VERSION_MAJOR, SPILLWAY_UAPI_VERSION_MINOR,
	       SPILLWAY_CHUNK_ORDER, (unsigned long long)SPILLWAY_CHUNK_SIZE, SPILLWAY_NR_ORDERS,
	       (unsigned long long)SPILLWAY_MAX_ALLOC_BYTES, SPILLWAY_ALLOC_FALLBACK,
	       SPILLWAY_ALLOC_FLAGS_ALL, SPILLWAY_PRESSURE_NONE, SPILLWAY_PRESSURE_MODERATE,
	       SPILLWAY_PRESSURE_CRITICAL, SPILLWAY_IOC_MAGIC, (unsigned long long)SPILLWAY_CSUM_INIT,
	       SPILLWAY_DEVICE_PATH, SPILLWAY_SYSFS_DIR);
	/* checksum of bytes i*7+3 (mod 256): the TS csum() must agree */
	for (i = 0; i < sizeof(pattern); i++)
		pattern[i] = (unsigned char)(i * 7 + 3);
	{
		__u64 words[sizeof(pattern) / 8];

		memcpy(words, pattern, sizeof(pattern));
		printf(" \"csum_pattern\": \"%llu\" }\n",
		       (unsigned long long)spillway_csum(SPILLWAY_CSUM_INIT, words, sizeof(pattern) / 8));
	}
	return 0;
}
