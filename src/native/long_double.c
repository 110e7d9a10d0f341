/* INCRBYFLOAT arithmetic in C `long double`, the type Redis uses for it, so
 * keel's results and their text match redis-server's digit for digit (on
 * x86-64 that is the 80-bit extended format, which Rust has no type for). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses exactly `len` bytes as a long double, with Redis's rules: no
 * leading space, no trailing bytes, no NaN. Returns 0 on success. */
static int parse_ld(const char *s, size_t len, long double *out) {
    char buf[5 * 1024 + 1];
    if (len == 0 || len >= sizeof(buf)) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (isspace((unsigned char)buf[0])) return -1;
    char *end;
    errno = 0;
    long double v = strtold(buf, &end);
    if ((size_t)(end - buf) != len || isnan(v)) return -1;
    if (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) return -1;
    *out = v;
    return 0;
}

/* Formats like Redis's human-friendly ld2string: "%.17Lf", trailing zeros
 * and a bare point removed. Returns the length, or -1. */
static int format_ld(long double v, char *out, size_t cap) {
    int n = snprintf(out, cap, "%.17Lf", v);
    if (n < 0 || (size_t)n >= cap) return -1;
    if (strchr(out, '.')) {
        while (n > 0 && out[n - 1] == '0') n--;
        if (n > 0 && out[n - 1] == '.') n--;
        out[n] = '\0';
    }
    if (n == 2 && out[0] == '-' && out[1] == '0') { out[0] = '0'; out[1] = '\0'; n = 1; }
    return n;
}

/* Returns the result's length in `out`, or -1 if `a` is not a float, -2 if
 * `b` is not, -3 if the result is NaN or infinite, -4 if it does not fit. */
int keel_ld_add(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t cap) {
    long double x, y;
    if (parse_ld(a, alen, &x) != 0) return -1;
    if (parse_ld(b, blen, &y) != 0) return -2;
    long double r = x + y;
    if (isnan(r) || isinf(r)) return -3;
    int n = format_ld(r, out, cap);
    return n < 0 ? -4 : n;
}

/* Validates a float argument by the same rules. Returns 0 if valid. */
int keel_ld_valid(const char *a, size_t alen) {
    long double x;
    return parse_ld(a, alen, &x);
}

/* Validates an increment as Redis's HINCRBYFLOAT does: 0 if valid and
 * finite, -1 if not a float, -3 if infinite. */
int keel_ld_check(const char *a, size_t alen) {
    long double x;
    if (parse_ld(a, alen, &x) != 0) return -1;
    if (isinf(x)) return -3;
    return 0;
}

/* C's strtod over the bytes of `s` up to its first NUL, as Redis calls it on
 * an sds. Stores the value and whether errno was ERANGE; returns how many
 * bytes were consumed, or -1 if out of memory. */
long keel_strtod(const char *s, size_t len, double *out, int *erange) {
    char small[128];
    char *buf = len < sizeof(small) ? small : malloc(len + 1);
    if (buf == NULL) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    *out = strtod(buf, &end);
    *erange = errno == ERANGE;
    long n = (long)(end - buf);
    if (buf != small) free(buf);
    return n;
}
