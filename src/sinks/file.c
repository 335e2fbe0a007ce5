/* file.c - JSON Lines appended to a file.
 *
 * Opened with O_APPEND (so logrotate's copytruncate leaves no hole and
 * concurrent appenders never overwrite each other), created 0640 if missing.
 * Lines are written whole: one write() per loop iteration carries every
 * complete record, and a failed partial write is truncated back to the last
 * complete line. reopen() reopens the path (logrotate's "create" mode).
 * Delivery: at-most-once; write errors drop the affected records, counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "sink.h"
#include "sinks/writer.h"

enum { FILE_OPT_PATH };

static const struct opt_def file_options[] = {
    [FILE_OPT_PATH] = {"path", OPT_PATH, true, "the file to append JSON Lines to"},
    {0},
};

struct file_sink {
    struct writer w;
    const char *path; /* borrowed from the config */
};

static int file_check(const struct sink_cfg *cfg, char *err, size_t errlen)
{
    const char *path = cfg->values[FILE_OPT_PATH].s;
    char *copy = strdup(path);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    const char *dir = dirname(copy);
    struct stat st;
    int r = 0;
    if (stat(dir, &st) < 0) {
        snprintf(err, errlen, "directory \"%s\" of \"path\" does not exist (%s); create it or fix the path",
                 dir, strerror(errno));
        r = -ENOENT;
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "\"%s\" in \"path\" is not a directory", dir);
        r = -ENOTDIR;
    } else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "\"path\" \"%s\" is a directory; name a file in it", path);
        r = -EISDIR;
    }
    free(copy);
    return r;
}

static int file_open_fd(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) {
        int r = -errno;
        snprintf(err, errlen, "cannot open \"%s\" for appending: %s", path, strerror(errno));
        return r;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "\"%s\" is a directory", path);
        return -EISDIR;
    }
    return fd;
}

static int file_open(struct sink *s, char *err, size_t errlen)
{
    struct file_sink *f = calloc(1, sizeof(*f));
    if (!f) {
        return -ENOMEM;
    }
    f->path = s->cfg->values[FILE_OPT_PATH].s;
    int fd = file_open_fd(f->path, err, errlen);
    if (fd < 0) {
        free(f);
        return fd;
    }
    writer_init(&f->w, s->loop, fd, &s->name, &s->dropped);
    s->priv = f;
    return 0;
}

static int file_write(struct sink *s, const char *line, size_t len)
{
    struct file_sink *f = s->priv;
    return writer_append(&f->w, line, len);
}

static int file_flush(struct sink *s, bool block)
{
    struct file_sink *f = s->priv;
    return writer_flush(&f->w, block);
}

static int file_reopen(struct sink *s)
{
    struct file_sink *f = s->priv;
    char err[512];
    f->path = s->cfg->values[FILE_OPT_PATH].s; /* the config may be a new one */
    (void)writer_flush(&f->w, true);
    int fd = file_open_fd(f->path, err, sizeof(err));
    if (fd < 0) {
        log_sink(LOG_ERR, s->name, "%s; still writing to the old file", err);
        return fd;
    }
    writer_done(&f->w);
    close(f->w.fd);
    writer_init(&f->w, s->loop, fd, &s->name, &s->dropped);
    return 0;
}

static void file_close(struct sink *s)
{
    struct file_sink *f = s->priv;
    if (!f) {
        return;
    }
    writer_done(&f->w);
    if (close(f->w.fd) < 0) {
        log_sink(LOG_ERR, s->name, "closing \"%s\" failed: %s", f->path, strerror(errno));
    }
    free(f);
    s->priv = NULL;
}

const struct sink_type sink_type_file = {
    .name = "file",
    .description = "JSON Lines appended to a file",
    .options = file_options,
    .check = file_check,
    .open = file_open,
    .write = file_write,
    .flush = file_flush,
    .reopen = file_reopen,
    .close = file_close,
};
