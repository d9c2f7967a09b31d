/* newlib system calls and the C/C++ runtime hooks of firmware that links C++ libraries (the
 * TFLite Micro export; aqedge's own runtime needs none of this and does not compile it).
 *
 * There is no OS, no file system and no heap:
 * - abort(), a failed assert(), exit()/_exit(), raise()/kill() of a signal and a pure virtual
 *   call never hang silently: aq_fatal() answers the request being served with an ERROR frame
 *   (code AQ_ERR_ABORTED, docs/protocol.md) carrying the reason and the last text written to
 *   stdout/stderr (or logged by TFLM), then halts with interrupts off;
 * - _write() to stdout/stderr keeps the last AQ_DIAG_BYTES bytes for that report (raw text on
 *   the UART would break the framing); other descriptors fail;
 * - _sbrk() refuses (ENOMEM): malloc() returns NULL. TFLM with TF_LITE_STATIC_MEMORY allocates
 *   from its arena only;
 * - _read() is at end of file, _close/_lseek fail, _fstat/_isatty describe a character device;
 * - __dso_handle and __aeabi_atexit (function-local statics with destructors, linked with
 *   -nostartfiles): destructors are never registered, the firmware never exits. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "aq_board.h"
#include "aq_protocol.h"

#define AQ_DIAG_BYTES 96u

static char aq_diag[AQ_DIAG_BYTES]; /* ring: the last AQ_DIAG_BYTES bytes written */
static uint32_t aq_diag_total;        /* bytes ever written */

void aq_diag_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        aq_diag[aq_diag_total % AQ_DIAG_BYTES] = s[i];
        aq_diag_total++;
    }
}

/* For C++ callers (TFLM's DebugLog callback): a NUL-terminated string. */
void aq_diag_puts(const char *s)
{
    aq_diag_write(s, strlen(s));
}

static size_t aq_append(char *out, size_t at, size_t cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n && at < cap; i++) {
        out[at++] = s[i];
    }
    return at;
}

static size_t aq_append_int(char *out, size_t at, size_t cap, int v)
{
    char digits[12];
    size_t k = 0;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    do {
        digits[k++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    if (v < 0) {
        digits[k++] = '-';
    }
    while (k > 0u && at < cap) {
        out[at++] = digits[--k];
    }
    return at;
}

__attribute__((noreturn)) static void aq_halt(void)
{
    __asm volatile("cpsid i" ::: "memory");
    for (;;) {
        __asm volatile("wfi");
    }
}

/* Report `what`, `detail`, `number` (when has_number) and `after`, then the last diagnostic
 * text, as ERROR AQ_ERR_ABORTED for the request being served, then halt. A second fatal error
 * while reporting halts at once. */
__attribute__((noreturn)) static void aq_fatal2(const char *what, const char *detail, int number,
                                                int has_number, const char *after)
{
    static volatile int reporting;
    if (reporting) {
        aq_halt();
    }
    reporting = 1;
    char text[AQ_ERROR_TEXT_MAX];
    size_t n = aq_append(text, 0u, sizeof text, what, strlen(what));
    if (detail != NULL) {
        n = aq_append(text, n, sizeof text, detail, strlen(detail));
    }
    if (has_number) {
        n = aq_append_int(text, n, sizeof text, number);
    }
    if (after != NULL) {
        n = aq_append(text, n, sizeof text, after, strlen(after));
    }
    uint32_t kept = aq_diag_total < AQ_DIAG_BYTES ? aq_diag_total : AQ_DIAG_BYTES;
    /* Drop trailing newlines of the log, then append what fits of its end. */
    while (kept > 0u && (aq_diag[(aq_diag_total - 1u) % AQ_DIAG_BYTES] == '\n')) {
        aq_diag_total--;
        kept--;
    }
    if (kept > 0u) {
        n = aq_append(text, n, sizeof text, " | ", 3u);
        uint32_t room = (uint32_t)(sizeof text - n);
        uint32_t take = kept < room ? kept : room;
        for (uint32_t i = aq_diag_total - take; i < aq_diag_total; i++) {
            char c = aq_diag[i % AQ_DIAG_BYTES];
            text[n++] = (c == '\n' || c == '\r') ? ' ' : c;
        }
    }
    static const uint8_t delimiter = 0u;
    aq_uart_write(&delimiter, 1u); /* ends any frame cut short by the failure */
    aq_protocol_send_error_text(aq_protocol_current_seq(), (uint8_t)AQ_ERR_ABORTED, text, n);
    aq_halt();
}

void aq_fatal(const char *what)
{
    aq_fatal2(what, NULL, 0, 0, NULL);
}

/* ---- the C library's ways out ------------------------------------------------------------- */

void abort(void)
{
    aq_fatal("abort()");
}

void __assert_func(const char *file, int line, const char *func, const char *expr)
{
    (void)func;
    const char *base = file != NULL ? file : "?";
    for (const char *p = base; *p != '\0'; p++) {
        if (*p == '/') {
            base = p + 1;
        }
    }
    char where[AQ_ERROR_TEXT_MAX];
    size_t n = aq_append(where, 0u, sizeof where - 1u, expr != NULL ? expr : "?",
                         expr != NULL ? strlen(expr) : 1u);
    n = aq_append(where, n, sizeof where - 1u, " at ", 4u);
    n = aq_append(where, n, sizeof where - 1u, base, strlen(base));
    n = aq_append(where, n, sizeof where - 1u, ":", 1u);
    where[n] = '\0';
    aq_fatal2("assert failed: ", where, line, 1, NULL);
}

void _exit(int status)
{
    aq_fatal2("exit(", NULL, status, 1, ")");
}

int _kill(int pid, int sig)
{
    (void)pid;
    if (sig == 0) {
        return 0;
    }
    aq_fatal2("signal ", NULL, sig, 1, NULL);
}

int _getpid(void)
{
    return 1;
}

/* ---- files: stdout/stderr only -------------------------------------------------------------- */

int _write(int fd, const char *buf, int n)
{
    if (fd != 1 && fd != 2) {
        errno = EBADF;
        return -1;
    }
    aq_diag_write(buf, n > 0 ? (size_t)n : 0u);
    return n;
}

int _read(int fd, char *buf, int n)
{
    (void)fd;
    (void)buf;
    (void)n;
    return 0;
}

int _close(int fd)
{
    (void)fd;
    errno = EBADF;
    return -1;
}

int _lseek(int fd, int offset, int whence)
{
    (void)fd;
    (void)offset;
    (void)whence;
    errno = ESPIPE;
    return -1;
}

int _fstat(int fd, struct stat *st)
{
    (void)fd;
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFCHR;
    return 0;
}

int _isatty(int fd)
{
    return fd >= 0 && fd <= 2;
}

/* ---- memory: no heap ------------------------------------------------------------------------ */

void *_sbrk(ptrdiff_t increment)
{
    (void)increment;
    errno = ENOMEM;
    return (void *)-1;
}

/* ---- C++ runtime hooks ------------------------------------------------------------------------ */

void *__dso_handle = NULL;

/* ARM EABI: registers the destructor of a static object; never run here. Weak, so a C++
 * runtime that is linked in anyway keeps its own. */
__attribute__((weak)) int __aeabi_atexit(void *object, void (*destructor)(void *), void *dso)
{
    (void)object;
    (void)destructor;
    (void)dso;
    return 0;
}

__attribute__((weak)) void __cxa_pure_virtual(void)
{
    aq_fatal("pure virtual call");
}
