/*
 * spillway filesystem sequential read bandwidth with O_DIRECT (page cache bypassed, so the figure is
 * the storage's, not RAM's). Built with gcc by engine/hardware/measure/disk.ts at first use (cached).
 *
 * usage: disk_bw read <file> <bytes> <block> <repeats>   read the first <bytes> of <file>
 *        disk_bw write <file> <bytes> <block>            create a test file of <bytes>
 * prints one JSON object: {"direct":true|false,"bytes":B,"gbps":[...one per repeat...]}
 *
 * Where the filesystem refuses O_DIRECT (tmpfs, some FUSE), it reads normally after asking the
 * kernel to drop the file's cached pages, and reports "direct":false.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int open_direct(const char *path, int flags, int *direct) {
  int fd = open(path, flags | O_DIRECT | O_CLOEXEC, 0600);
  *direct = 1;
  if (fd < 0 && errno == EINVAL) {
    fd = open(path, flags | O_CLOEXEC, 0600);
    *direct = 0;
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s read <file> <bytes> <block> <repeats> | write <file> <bytes> <block>\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1], *path = argv[2];
  size_t bytes = strtoull(argv[3], NULL, 10), block = strtoull(argv[4], NULL, 10);
  int repeats = argc > 5 ? atoi(argv[5]) : 1;
  if (block < 4096 || block % 4096 || bytes < block || repeats < 1) {
    fprintf(stderr, "disk_bw: block must be a multiple of 4096 and <= bytes, repeats >= 1\n");
    return 2;
  }
  void *buf;
  if (posix_memalign(&buf, 4096, block) != 0) {
    fprintf(stderr, "disk_bw: cannot allocate %zu bytes\n", block);
    return 1;
  }
  int direct;
  if (strcmp(mode, "write") == 0) {
    /* Non-zero, non-repeating-per-page content so no layer can compress or dedupe it away. */
    uint64_t *w = buf, x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < block / 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; w[i] = x; }
    int fd = open_direct(path, O_WRONLY | O_CREAT | O_TRUNC, &direct);
    if (fd < 0) { fprintf(stderr, "disk_bw: %s: %s\n", path, strerror(errno)); return 1; }
    for (size_t done = 0; done < bytes; done += block) {
      ssize_t n = write(fd, buf, block);
      if (n != (ssize_t)block) {
        fprintf(stderr, "disk_bw: write %s: %s\n", path, n < 0 ? strerror(errno) : "short write");
        close(fd); unlink(path); return 1;
      }
    }
    if (fsync(fd) != 0) { fprintf(stderr, "disk_bw: fsync %s: %s\n", path, strerror(errno)); close(fd); unlink(path); return 1; }
    close(fd);
    printf("{\"direct\":%s,\"bytes\":%zu}\n", direct ? "true" : "false", bytes);
    return 0;
  }
  if (strcmp(mode, "read") != 0) { fprintf(stderr, "disk_bw: mode must be read or write\n"); return 2; }
  int fd = open_direct(path, O_RDONLY, &direct);
  if (fd < 0) { fprintf(stderr, "disk_bw: %s: %s\n", path, strerror(errno)); return 1; }
  struct stat st;
  if (fstat(fd, &st) != 0) { fprintf(stderr, "disk_bw: stat %s: %s\n", path, strerror(errno)); return 1; }
  size_t avail = (size_t)st.st_size / block * block;
  if (avail < bytes) bytes = avail;
  if (bytes == 0) { fprintf(stderr, "disk_bw: %s is smaller than one block (%zu bytes)\n", path, block); return 1; }
  printf("{\"direct\":%s,\"bytes\":%zu,\"gbps\":[", direct ? "true" : "false", bytes);
  for (int r = 0; r < repeats; r++) {
    if (!direct) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    double t0 = now();
    for (size_t off = 0; off < bytes; off += block) {
      ssize_t n = pread(fd, buf, block, (off_t)off);
      if (n != (ssize_t)block) {
        fprintf(stderr, "disk_bw: read %s at %zu: %s\n", path, off, n < 0 ? strerror(errno) : "short read");
        close(fd); return 1;
      }
    }
    double secs = now() - t0;
    printf("%s%.3f", r ? "," : "", (double)bytes / secs / 1e9);
  }
  printf("]}\n");
  close(fd);
  free(buf);
  return 0;
}
