/* mpilm plot RUN_DIR [--out PREFIX]: loss per objective, learning rate and
 * throughput of a run, from RUN_DIR/metrics.jsonl, drawn by gnuplot into
 * PREFIX.png and PREFIX.svg (default PREFIX = RUN_DIR/curves). The data and the
 * gnuplot script are kept beside them (PREFIX.dat, PREFIX.gp) so a user can
 * restyle the plot. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "cli.h"

/* Columns of PREFIX.dat, in order; a field a record lacks is written as "?". */
static const char *const columns[] = {"step", "loss", "lm_loss", "mlm_loss", "nsp_loss", "lr", "tokens_per_s"};
enum { N_COLUMNS = sizeof columns / sizeof columns[0] };

typedef struct plot_data {
    char *text; /* the .dat file */
    size_t len, cap;
    int rows;
    int has[N_COLUMNS]; /* which columns hold at least one value */
} plot_data;

static status_t append(plot_data *d, const char *s)
{
    size_t n = strlen(s);
    if (d->len + n + 1 > d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 1 << 16;
        while (cap < d->len + n + 1) cap *= 2;
        char *grown = realloc(d->text, cap);
        FAIL_IF(!grown, ST_NOMEM, "out of memory collecting metrics");
        d->text = grown;
        d->cap = cap;
    }
    memcpy(d->text + d->len, s, n + 1);
    d->len += n;
    return ST_OK;
}

static status_t add_record(plot_data *d, const char *line, const char *path, int lineno)
{
    cJSON *obj = cJSON_Parse(line);
    if (!obj || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return st_fail(ST_FORMAT, "%s:%d: not a JSON object (found '%.40s'); the metrics file is damaged", path, lineno,
                       line);
    }
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(obj, "step");
    if (!cJSON_IsNumber(step)) {
        cJSON_Delete(obj);
        return st_fail(ST_FORMAT, "%s:%d: record without a numeric \"step\"", path, lineno);
    }
    status_t st = ST_OK;
    for (int c = 0; c < N_COLUMNS && st == ST_OK; c++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, columns[c]);
        char cell[64];
        if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
            snprintf(cell, sizeof cell, "%.9g", v->valuedouble);
            d->has[c] = 1;
        } else {
            snprintf(cell, sizeof cell, "?");
        }
        st = append(d, cell);
        if (st == ST_OK) st = append(d, c + 1 < N_COLUMNS ? "\t" : "\n");
    }
    cJSON_Delete(obj);
    d->rows++;
    return st;
}

static status_t read_metrics(const char *path, plot_data *d)
{
    char *text;
    size_t len;
    if (read_file(path, &text, &len) != ST_OK)
        return st_context(ST_IO, "no metrics to plot (is this a run directory of mpilm train?): ");
    status_t st = append(d, "# step\tloss\tlm_loss\tmlm_loss\tnsp_loss\tlr\ttokens_per_s\n");
    int lineno = 0;
    for (char *line = text; line && *line && st == ST_OK;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        if (*line) st = add_record(d, line, path, lineno);
        line = next;
    }
    free(text);
    TRY(st);
    FAIL_IF(d->rows == 0, ST_FORMAT, "%s: no records (expected one JSON object per logged step); train longer than log.every steps",
            path);
    return ST_OK;
}

/* One panel per quantity, stacked, written once per terminal. */
static status_t write_script(const char *prefix, const plot_data *d)
{
    char *script = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&script, &size);
    FAIL_IF(!f, ST_NOMEM, "out of memory writing the gnuplot script");
    fprintf(f, "set datafile missing '?'\nset datafile separator '\\t'\nset key top right\nset grid\n");
    static const char *const terminals[][2] = {{"pngcairo noenhanced size 1000,1000", "png"}, {"svg noenhanced size 1000,1000 dynamic", "svg"}};
    for (int t = 0; t < 2; t++) {
        fprintf(f, "\nset terminal %s\nset output '%s.%s'\nset multiplot layout 3,1 title 'mpilm run'\n",
                terminals[t][0], prefix, terminals[t][1]);
        fprintf(f, "set xlabel 'step'\nset ylabel 'loss'\nplot");
        const char *sep = "";
        for (int c = 1; c <= 4; c++) {
            if (!d->has[c]) continue;
            fprintf(f, "%s '%s.dat' using 1:%d with lines lw 2 title '%s'", sep, prefix, c + 1, columns[c]);
            sep = ",";
        }
        fprintf(f, "\nset ylabel 'learning rate'\nplot '%s.dat' using 1:6 with lines lw 2 title 'lr'\n", prefix);
        fprintf(f, "set ylabel 'tokens/s'\nplot '%s.dat' using 1:7 with lines lw 2 title 'tokens/s'\n", prefix);
        fprintf(f, "unset multiplot\n");
    }
    fclose(f);
    char path[4096];
    snprintf(path, sizeof path, "%s.gp", prefix);
    status_t st = atomic_write_file(path, script, size);
    free(script);
    return st;
}

static status_t run_gnuplot(const char *prefix)
{
    char script[4096];
    snprintf(script, sizeof script, "%s.gp", prefix);
    pid_t pid = fork();
    FAIL_IF(pid < 0, ST_ERROR, "cannot start gnuplot (%s)", strerror(errno));
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int wstatus;
    FAIL_IF(waitpid(pid, &wstatus, 0) != pid, ST_ERROR, "waiting for gnuplot failed");
    FAIL_IF(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127, ST_ERROR,
            "gnuplot is not installed (expected the gnuplot command on PATH); run make deps or apt-get install gnuplot-nox");
    FAIL_IF(!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0, ST_ERROR,
            "%s: gnuplot failed (see its message above)", script);
    return ST_OK;
}

static status_t plot_run(const char *run_dir, const char *prefix)
{
    char metrics[4096], data_path[4096];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run_dir);
    plot_data d = {0};
    status_t st = read_metrics(metrics, &d);
    snprintf(data_path, sizeof data_path, "%s.dat", prefix);
    if (st == ST_OK) st = atomic_write_file(data_path, d.text, d.len);
    if (st == ST_OK) st = write_script(prefix, &d);
    if (st == ST_OK) st = run_gnuplot(prefix);
    if (st == ST_OK) log_info("plot: %d steps from %s -> %s.png, %s.svg", d.rows, metrics, prefix, prefix);
    free(d.text);
    return st;
}

int cmd_plot(int argc, char **argv)
{
    static const struct option long_options[] = {{"out", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    const char *prefix = NULL;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (ch == 'o') prefix = optarg;
        else return cli_finish(st_fail(ST_USAGE, "plot: unknown or incomplete option '%s' (see mpilm plot --help)", argv[optind - 1]));
    }
    if (optind + 1 != argc) return cli_finish(st_fail(ST_USAGE, "plot: expected one RUN_DIR (see mpilm plot --help)"));
    const char *run_dir = argv[optind];
    char default_prefix[4096];
    if (!prefix) {
        snprintf(default_prefix, sizeof default_prefix, "%s/curves", run_dir);
        prefix = default_prefix;
    }
    return cli_finish(plot_run(run_dir, prefix));
}
