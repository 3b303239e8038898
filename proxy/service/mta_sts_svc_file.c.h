/*
 * The cache file of mta_sts_svc.c (included there: it works on the
 * service's private table). Entries in mta_sts_cache_format()'s form, one
 * after the other. Written whole and crash-safe: a temporary file in the
 * same directory, fsync, rename over the old one, fsync of the directory
 * (so the rename itself survives a power cut); a reader therefore sees the
 * old file or the new one, never a mix. Read at start with the strict
 * parser: an entry that does not parse is skipped with a warning naming
 * FILE:LINE, and reading resumes at the next entry's first line.
 */

#define LOAD_WARNINGS_MAX 20

static unsigned lines_in(const char *s, size_t n)
{
    unsigned l = 0;

    for (size_t i = 0; i < n; i++)
        l += s[i] == '\n';
    return l;
}

/* Offset of the next line that starts an entry, after off, or len. */
static size_t next_entry(const char *text, size_t len, size_t off)
{
    static const char head[] = "\nmta-sts-cache ";

    for (size_t i = off; i + sizeof(head) - 1 <= len; i++)
        if (text[i] == '\n' && memcmp(text + i, head, sizeof(head) - 1) == 0)
            return i + 1;
    return len;
}

static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 64 * 1024, n = 0;
    char *buf;

    *out = NULL;
    *outlen = 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    if ((buf = malloc(cap)) == NULL)
        goto fail_mem;
    for (;;) {
        if (n == cap) {
            if (cap >= MTA_STS_SVC_FILE_MAX) {
                log_warn("event=mta_sts_cache_truncated file=%s bytes=%zu msg=\"cache file "
                         "longer than its bound: the rest is ignored\"",
                         path, n);
                break;
            }
            char *b = realloc(buf, cap * 2);
            if (b == NULL)
                goto fail_mem;
            buf = b;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *out = buf;
    *outlen = n;
    return 0;

fail_mem:
    free(buf);
    close(fd);
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int load(struct mta_sts_svc *svc, char *err, size_t errlen)
{
    char *text;
    size_t len, off = 0;
    unsigned line = 1;
    int64_t now = svc->clock(svc->clock_arg);

    if (read_file(svc->file, &text, &len, err, errlen) != 0)
        return -1;
    while (off < len) {
        static _Thread_local struct mta_sts_cache_entry tmp;
        struct mta_sts_snapshot *s;
        const char *why = "parse error";
        size_t used = 0;

        if (mta_sts_cache_parse(text + off, len - off, &tmp, &used, &why) != MTA_STS_OK) {
            size_t skip = next_entry(text, len, off);
            char q[200];

            /* One warning per entry, however much of it is broken, and
             * no flood from a file full of them: the count follows. */
            if (svc->stats.load_skipped < LOAD_WARNINGS_MAX)
                log_warn("%s:%u: mta_sts cache entry skipped: %s", svc->file, line,
                         log_quote(why, q, sizeof(q)));
            svc->stats.load_skipped++;
            line += lines_in(text + off, skip - off);
            off = skip;
            continue;
        }
        line += lines_in(text + off, used);
        off += used;
        if (!mta_sts_cache_valid(&tmp, now))
            continue;
        struct entry *e;
        if ((s = snapshot_new(&tmp)) == NULL || (e = get(svc, tmp.domain)) == NULL) {
            free(s);
            free(text);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        /* checked stays 0: the first delivery checks the TXT id. */
        set_snap(svc, e, s);
        svc->stats.loaded++;
    }
    free(text);
    svc->dirty = false;
    if (svc->stats.loaded > 0 || svc->stats.load_skipped > 0)
        log_info("event=mta_sts_cache_loaded file=%s entries=%llu skipped=%llu", svc->file,
                 (unsigned long long)svc->stats.loaded,
                 (unsigned long long)svc->stats.load_skipped);
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *file)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    size_t n = slash == NULL ? 1 : (slash == file ? 1 : (size_t)(slash - file));

    if (n >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, slash == NULL ? "." : file, n);
    dir[n] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Writes snaps (n of them) to svc->file through a temporary file. */
static int write_file(struct mta_sts_svc *svc, struct mta_sts_snapshot **snaps, size_t n)
{
    static _Thread_local char buf[MTA_STS_CACHE_TEXT_MAX];
    static _Thread_local struct mta_sts_cache_entry e;
    char tmp[PATH_MAX];
    int fd, rc = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", svc->file, (long)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    /* A fresh file, never one that is there already (a symbolic link left
     * in the directory would have this process write through it). */
    unlink(tmp);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
        return -errno;
    for (size_t i = 0; i < n && rc == 0; i++) {
        snapshot_expand(snaps[i], &e);
        int len = mta_sts_cache_format(&e, buf, sizeof(buf));
        if (len > 0)
            rc = write_all(fd, buf, (size_t)len);
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, svc->file) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(svc->file);
}

int mta_sts_svc_save(struct mta_sts_svc *svc)
{
    struct mta_sts_snapshot **snaps;
    size_t n = 0;
    int rc;

    if (svc->file == NULL)
        return -ENOENT;
    pthread_mutex_lock(&svc->save_lock);
    pthread_mutex_lock(&svc->lock);
    int64_t now = svc->clock(svc->clock_arg);
    snaps = malloc((svc->policies + 1) * sizeof(*snaps));
    if (snaps != NULL) {
        /* Least recently used first: load() puts each entry it reads at
         * the front, so the recency order survives a restart. */
        for (struct entry *e = svc->lru_tail; e != NULL; e = e->prev)
            if (e->snap != NULL && now < e->snap->expires)
                snaps[n++] = snapshot_ref(e->snap);
        svc->dirty = false;
    }
    pthread_mutex_unlock(&svc->lock);
    if (snaps == NULL) {
        pthread_mutex_unlock(&svc->save_lock);
        return -ENOMEM;
    }
    rc = write_file(svc, snaps, n);
    for (size_t i = 0; i < n; i++)
        mta_sts_snapshot_unref(snaps[i]);
    free(snaps);
    pthread_mutex_lock(&svc->lock);
    if (rc == 0) {
        svc->stats.saves++;
    } else {
        svc->stats.save_errors++;
        svc->dirty = true; /* try again after the next change, or at exit */
    }
    pthread_mutex_unlock(&svc->lock);
    pthread_mutex_unlock(&svc->save_lock);
    if (rc != 0)
        log_warn("event=mta_sts_cache_save_failed file=%s error=\"%s\"", svc->file, strerror(-rc));
    return rc;
}

/* Waits for a change, then for save_delay_ms (more changes join the same
 * write), then writes; off every loop, so no session waits for a disk. */
static void *save_thread(void *arg)
{
    struct mta_sts_svc *svc = arg;

    pthread_mutex_lock(&svc->lock);
    while (!svc->stopping) {
        if (!svc->dirty) {
            pthread_cond_wait(&svc->cond, &svc->lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += svc->save_delay_ms / 1000;
        until.tv_nsec += (long)(svc->save_delay_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!svc->stopping && pthread_cond_timedwait(&svc->cond, &svc->lock, &until) == 0)
            ;
        if (svc->stopping)
            break; /* mta_sts_svc_unref writes the last state */
        pthread_mutex_unlock(&svc->lock);
        mta_sts_svc_save(svc);
        pthread_mutex_lock(&svc->lock);
    }
    pthread_mutex_unlock(&svc->lock);
    return NULL;
}
