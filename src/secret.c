/* secret.c - secret files and their cache. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct secret_entry {
    struct secret_entry *next;
    char *path;      /* owned */
    char *value;     /* secret_read(), or NULL */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    usec_t checked;  /* CLOCK_MONOTONIC of the last stat */
    bool failing;    /* the last re-read failed (reported once) */
};

void secret_free(char *value)
{
    if (value) {
        explicit_bzero(value, strlen(value));
        free(value);
    }
}

int secret_read(const char *path, char **ret, size_t *ret_len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int r = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return r;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        snprintf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return r;
    }
    char *buf = malloc(SECRET_MAX_BYTES + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, SECRET_MAX_BYTES + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int r = -errno;
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            explicit_bzero(buf, len);
            free(buf);
            return r;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > SECRET_MAX_BYTES) {
            snprintf(err, errlen, "%s is larger than %d bytes; it should hold one secret",
                     path, SECRET_MAX_BYTES);
            close(fd);
            explicit_bzero(buf, len);
            free(buf);
            return -EFBIG;
        }
    }
    close(fd);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }
    buf[len] = '\0';
    int r = 0;
    if (len == 0) {
        snprintf(err, errlen, "%s is empty", path);
        r = -ENODATA;
    } else if (memchr(buf, '\n', len) || memchr(buf, '\r', len) || strlen(buf) != len) {
        /* never say where: the position would tell something about it */
        snprintf(err, errlen,
                 "%s holds more than one line (or a NUL byte); it must hold the secret alone",
                 path);
        r = -EINVAL;
    }
    if (r < 0) {
        explicit_bzero(buf, SECRET_MAX_BYTES + 1);
        free(buf);
        return r;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

char *secret_credential_path(const char *name, char *err, size_t errlen)
{
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(err, errlen, "invalid credential name \"%.64s\" (a file name, no '/')", name);
        return NULL;
    }
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir) {
        snprintf(err, errlen,
                 "credential \"%.64s\" needs $CREDENTIALS_DIRECTORY, which is not set: run "
                 "fetchd under systemd with LoadCredential=%.64s:PATH, or use a *_file key",
                 name, name);
        return NULL;
    }
    size_t l = strlen(dir) + strlen(name) + 2;
    char *p = malloc(l);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(p, l, "%s/%s", dir, name);
    return p;
}

int secrets_get(struct secrets *s, const char *path, usec_t now, const char **value,
                char *err, size_t errlen, bool *warn)
{
    *warn = false;
    struct secret_entry *e = s->list;
    while (e && strcmp(e->path, path) != 0) {
        e = e->next;
    }
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->path = strdup(path))) {
            free(e);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        e->next = s->list;
        s->list = e;
    }
    if (e->value && now - e->checked < SECRET_RECHECK_USEC && e->checked) {
        *value = e->value;
        return 0;
    }
    e->checked = now ? now : 1;
    struct stat st;
    if (e->value && stat(path, &st) == 0 && st.st_dev == e->dev && st.st_ino == e->ino &&
        st.st_size == e->size && st.st_mtim.tv_sec == e->mtime.tv_sec &&
        st.st_mtim.tv_nsec == e->mtime.tv_nsec) {
        *value = e->value;
        return 0;
    }
    char *nv = NULL;
    size_t nl;
    int r = secret_read(path, &nv, &nl, err, errlen);
    if (r < 0) {
        if (e->value) {
            /* a rotation in progress (file briefly missing) must not stop
             * fetching: keep the last good value, say so once */
            *warn = !e->failing;
            e->failing = true;
            *value = e->value;
            return 0;
        }
        return r;
    }
    if (stat(path, &st) == 0) {
        e->dev = st.st_dev;
        e->ino = st.st_ino;
        e->size = st.st_size;
        e->mtime = st.st_mtim;
    }
    secret_free(e->value);
    e->value = nv;
    e->failing = false;
    *value = e->value;
    return 0;
}

void secrets_done(struct secrets *s)
{
    while (s->list) {
        struct secret_entry *e = s->list;
        s->list = e->next;
        secret_free(e->value);
        free(e->path);
        free(e);
    }
}
