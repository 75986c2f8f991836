/* train/peak — the GEMM rate MFU is measured against.
 *
 * MFU divides the model's flop rate by what the GEMMs of this machine really
 * reach in the precision the run computes in: a 2048^3 GEMM through the
 * engine the linear layers use (fp32: tensor.h's tensor_gemm, oneDNN's f32 matmul;
 * bf16: oneDNN's bf16 one), best of 5 after a warm-up, on each rank's threads while the
 * other ranks of the node do the same (the contention training sees). A
 * small or single timing is at the mercy of a busy host (a 1024^3 sgemm timed
 * once read 289 GFLOP/s on a quiet host where BLIS reaches 400-430, and
 * 21-400 on a busy one), so the measurement is made once per machine and
 * kept in a cache file, named by precision, threads per rank, ranks on the
 * node (they share its cores and memory bandwidth), kernel set and CPU model: MPILM_CACHE_DIR, else $XDG_CACHE_HOME/mpilm, else ~/.cache/mpilm.
 * MPILM_PEAK_GFLOPS (GFLOP/s of one rank) overrides both. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/hash.h"
#include "base/log.h"
#include "train/train_internal.h"

enum { PEAK_N = 2048, PEAK_REPS = 5 };

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v) snprintf(buf, n, "%s", v + 1 + strspn(v + 1, " \t"));
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

/* The per-machine cache directory; 0 when there is none. */
static int cache_base(char *base, size_t n)
{
    const char *dir = getenv("MPILM_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir) snprintf(base, n, "%s", dir);
    else if (xdg && *xdg) snprintf(base, n, "%s/mpilm", xdg);
    else if (home && *home) snprintf(base, n, "%s/.cache/mpilm", home);
    else return 0;
    return 1;
}

int train_cache_file(const char *prefix, const char *key, char *path, size_t n)
{
    char base[1024], cpu[256], full[2048];
    if (!cache_base(base, sizeof base)) return 0;
    cpu_model(cpu, sizeof cpu);
    snprintf(full, sizeof full, "%s|%s", cpu, key);
    snprintf(path, n, "%s/%s-%016llx.txt", base, prefix, (unsigned long long)hash_xxh3(full, strlen(full)));
    return 1;
}

/* The cache file of this precision, thread count and CPU; 0 when there is no
 * place for it. */
static int cache_path(const trainer *t, char *path, size_t n)
{
    char base[1024];
    if (!cache_base(base, sizeof base)) return 0;
    char cpu[256], key[512];
    cpu_model(cpu, sizeof cpu);
    /* the engine is part of the key: a build that changes the GEMM behind
       the peak (fp32 moved from BLIS to oneDNN's matmul) measures anew */
    snprintf(key, sizeof key, "%s|%s|onednn-2.6", cpu, t->rt.arch);
    snprintf(path, n, "%s/peak-%s-%dt-%dr-%016llx.txt", base, t->tc.model.bf16 ? "bf16" : "fp32", t->rt.threads,
             t->local_ranks, (unsigned long long)hash_xxh3(key, strlen(key)));
    return 1;
}

/* "gflops=X ..." from the cache file; 0 when absent or unreadable. */
static double cache_read(const char *path, char *when, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0.0;
    char line[512] = "";
    double g = 0.0;
    if (fgets(line, sizeof line, f) && sscanf(line, "gflops=%lf", &g) == 1 && g > 0.0 && g < 1e7) {
        const char *at = strstr(line, "measured=");
        snprintf(when, n, "%.*s", at ? (int)strcspn(at + 9, " \n") : 0, at ? at + 9 : "");
    } else {
        g = 0.0;
    }
    fclose(f);
    return g;
}

/* mkdir -p of the file's directory, then write-to-temp and rename, so a
 * reader never sees half a file and ranks writing at once are harmless.
 * Returns 0 when the file could not be written (the peak is then measured
 * again next time; nothing else depends on it). */
int train_cache_store(const char *path, const char *line)
{
    char dir[1024], tmp[1100];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 0;
            *p = '/';
        }
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return 0;
    int ok = fputs(line, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) == 0) return 1;
    unlink(tmp);
    return 0;
}

static int cache_write(const char *path, double g, const char *when)
{
    char line[256];
    snprintf(line, sizeof line, "gflops=%.1f n=%d reps=%d measured=%s\n", g, PEAK_N, PEAK_REPS, when);
    return train_cache_store(path, line);
}

/* This rank's peak and where it came from. */
static double rank_peak(const trainer *t, char *src, size_t n)
{
    const char *env = getenv("MPILM_PEAK_GFLOPS");
    if (env && *env) {
        char *end;
        double g = strtod(env, &end);
        if (*end == 0 && g > 0.0) {
            snprintf(src, n, "MPILM_PEAK_GFLOPS = %g per rank", g);
            return g;
        }
        log_msg(LOG_WARN, "MPILM_PEAK_GFLOPS = '%s' is not a positive number; measuring the peak instead", env);
    }
    char path[1200], when[64] = "";
    int cached = cache_path(t, path, sizeof path);
    double g = cached ? cache_read(path, when, sizeof when) : 0.0;
    if (g > 0.0) {
        snprintf(src, n, "measured %s, cached in %s", when, path);
        return g;
    }
    g = tensor_gemm_peak_gflops(t->tc.model.bf16, PEAK_N, PEAK_REPS);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    int kept = cached && g > 0.0 && cache_write(path, g, when);
    snprintf(src, n, "measured now, %d^3 best of %d; %s%s", PEAK_N, PEAK_REPS,
             kept ? "cached in " : cached ? "could not cache it in " : "no cache directory (set MPILM_CACHE_DIR)",
             cached ? path : "");
    return g;
}

status_t trainer_measure_peak(trainer *t)
{
    char src[1400];
    double peak = rank_peak(t, src, sizeof src);
    FAIL_IF(MPI_Allreduce(&peak, &t->peak_gflops, 1, MPI_DOUBLE, MPI_SUM, t->comm) != MPI_SUCCESS, ST_MPI,
            "train: summing the ranks' GEMM peaks failed");
    log_msg(LOG_INFO, "MFU against the %s GEMM peak: %.0f GFLOP/s in all (rank 0: %.0f, %s)",
            t->tc.model.bf16 ? "bf16" : "fp32", t->peak_gflops, peak, src);
    return ST_OK;
}
