/* mpilm plot RUN_DIR... [--out PREFIX]: the curves of one or several runs,
 * overlaid, from each RUN_DIR/metrics.jsonl, drawn by gnuplot into PREFIX.png
 * and PREFIX.svg: four stacked panels against the step — loss (per objective,
 * and the validation loss where the run has one), learning rate, gradient
 * norm, tokens/s — each series titled by its run's name (the directory's).
 * The data (PREFIX.dat, one block per run) and the gnuplot script (PREFIX.gp)
 * are kept beside them, so a user can restyle the plot. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "cli.h"

/* Columns of PREFIX.dat, in order; a field a record lacks is written as "?"
 * (gnuplot skips the point, and a line joins the points around it). */
static const char *const columns[] = {"step", "loss",     "lm_loss",  "mlm_loss",    "nsp_loss",
                                      "val_loss", "lr", "grad_norm", "tokens_per_s"};
enum { COL_LOSS = 1, COL_VAL_LOSS = 5, COL_LR, COL_GRAD_NORM, COL_TOKENS_PER_S, N_COLUMNS };

typedef struct plot_run {
    const char *dir;
    const char *name;    /* the legend's: the directory's name, or dir when two names clash */
    int rows;
    int has[N_COLUMNS];  /* which columns hold at least one value */
} plot_run;

typedef struct plot_text {
    char *text;
    size_t len, cap;
} plot_text;

static status_t append(plot_text *d, const char *s)
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

static status_t add_record(plot_text *d, plot_run *run, const char *line, const char *path, int lineno)
{
    cJSON *obj = cJSON_Parse(line);
    if (!obj || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return st_fail(ST_FORMAT, "%s:%d: not a JSON object (found '%.40s'); the metrics file is damaged: remove or "
                       "repair that line", path, lineno, line);
    }
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(obj, "step");
    if (!cJSON_IsNumber(step)) {
        cJSON_Delete(obj);
        return st_fail(ST_FORMAT, "%s:%d: record without a numeric \"step\" (expected one JSON object per logged "
                       "step); the metrics file is damaged: remove or repair that line", path, lineno);
    }
    status_t st = ST_OK;
    for (int c = 0; c < N_COLUMNS && st == ST_OK; c++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, columns[c]);
        char cell[64];
        if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
            snprintf(cell, sizeof cell, "%.9g", v->valuedouble);
            run->has[c] = 1;
        } else {
            snprintf(cell, sizeof cell, "?");
        }
        st = append(d, cell);
        if (st == ST_OK) st = append(d, c + 1 < N_COLUMNS ? "\t" : "\n");
    }
    cJSON_Delete(obj);
    run->rows++;
    return st;
}

/* Appends the run's block (a comment naming it, its rows, two blank lines:
 * gnuplot's "index" separator) to d. */
static status_t read_metrics(plot_run *run, plot_text *d)
{
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run->dir);
    if (fileio_read_file(path, &text, &len) != ST_OK)
        return st_context(ST_IO, "plot: run %s has no metrics to plot (is it a run directory of mpilm train?): ",
                          run->dir);
    status_t st = append(d, "# run ");
    if (st == ST_OK) st = append(d, run->dir);
    if (st == ST_OK) st = append(d, "\n# step\tloss\tlm_loss\tmlm_loss\tnsp_loss\tval_loss\tlr\tgrad_norm\ttokens_per_s\n");
    int lineno = 0;
    for (char *line = text; line && *line && st == ST_OK;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        if (*line) st = add_record(d, run, line, path, lineno);
        line = next;
    }
    free(text);
    TRY(st);
    FAIL_IF(run->rows == 0, ST_FORMAT, "%s: no records (expected one JSON object per logged step); train longer "
            "than log.every steps", path);
    return append(d, "\n\n");
}

/* s inside gnuplot's single quotes (a quote is doubled) */
static void put_quoted(FILE *f, const char *s)
{
    putc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') putc('\'', f);
        putc(*s, f);
    }
    putc('\'', f);
}

/* One panel: every run's series of the given columns (a run's colour, one
 * dash type per column; the validation loss as points on a line). A panel no
 * run has data for says so instead of failing gnuplot. */
static void panel(FILE *f, const char *prefix, const char *ylabel, const plot_run *runs, int n_runs, const int *cols,
                  int n_cols)
{
    fprintf(f, "set ylabel ");
    put_quoted(f, ylabel);
    fprintf(f, "\n");
    int drawn = 0;
    for (int r = 0; r < n_runs; r++) {
        for (int k = 0; k < n_cols; k++) {
            int c = cols[k];
            if (!runs[r].has[c]) continue;
            char title[600];
            snprintf(title, sizeof title, "%s %s", runs[r].name, columns[c]);
            fprintf(f, "%s ", drawn ? "," : "plot");
            char data[4200];
            snprintf(data, sizeof data, "%s.dat", prefix);
            put_quoted(f, data);
            fprintf(f, " index %d using 1:%d with %s lw 2 lc %d dt %d title ", r, c + 1,
                    c == COL_VAL_LOSS ? "linespoints pt 7 ps 0.6" : "lines", r + 1, k + 1);
            put_quoted(f, title);
            drawn++;
        }
    }
    if (!drawn) {
        fprintf(f, "set label 1 'no %s in the metrics' at graph 0.5, 0.5 center\nplot [0:1] [0:1] -1 notitle\n"
                "unset label 1", ylabel);
    }
    fprintf(f, "\n");
}

static status_t write_script(const char *prefix, const plot_run *runs, int n_runs)
{
    char *script = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&script, &size);
    FAIL_IF(!f, ST_NOMEM, "out of memory writing the gnuplot script");
    /* fixed margins, so the panels' step axes line up whatever their legends */
    fprintf(f, "set datafile missing '?'\nset datafile separator '\\t'\nset key outside right top\nset grid\n"
            "set lmargin at screen 0.09\nset rmargin at screen 0.76\n");
    static const char *const terminals[][2] = {{"pngcairo noenhanced size 1200,1400", "png"},
                                               {"svg noenhanced size 1200,1400 dynamic", "svg"}};
    /* lm_loss is not drawn: a GPT's loss is its lm_loss (it stays in PREFIX.dat) */
    static const int loss[] = {COL_LOSS, 3, 4, COL_VAL_LOSS}, lr[] = {COL_LR}, grad[] = {COL_GRAD_NORM},
                     speed[] = {COL_TOKENS_PER_S};
    for (int t = 0; t < 2; t++) {
        char output[4200], title[4096];
        snprintf(output, sizeof output, "%s.%s", prefix, terminals[t][1]);
        int used = snprintf(title, sizeof title, "mpilm:");
        for (int r = 0; r < n_runs && used < (int)sizeof title; r++)
            used += snprintf(title + used, sizeof title - (size_t)used, "%s %s", r ? "," : "", runs[r].name);
        fprintf(f, "\nset terminal %s\nset output ", terminals[t][0]);
        put_quoted(f, output);
        fprintf(f, "\nset multiplot layout 4,1 title ");
        put_quoted(f, title);
        fprintf(f, "\nset xlabel 'step'\n");
        panel(f, prefix, "loss", runs, n_runs, loss, 4);
        panel(f, prefix, "learning rate", runs, n_runs, lr, 1);
        panel(f, prefix, "grad norm", runs, n_runs, grad, 1);
        panel(f, prefix, "tokens/s", runs, n_runs, speed, 1);
        fprintf(f, "unset multiplot\n");
    }
    fclose(f);
    char path[4200];
    snprintf(path, sizeof path, "%s.gp", prefix);
    status_t st = fileio_write_atomic(path, script, size);
    free(script);
    return st;
}

static status_t run_gnuplot(const char *prefix)
{
    char script[4200];
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

/* Each run's legend name: its directory's last component ("a/b/run/" ->
 * "run"); the path as given when two runs would share a name. */
static void name_runs(plot_run *runs, int n, char (*names)[256])
{
    for (int r = 0; r < n; r++) {
        size_t len = strlen(runs[r].dir);
        while (len > 1 && runs[r].dir[len - 1] == '/') len--;
        size_t start = len;
        while (start > 0 && runs[r].dir[start - 1] != '/') start--;
        snprintf(names[r], sizeof names[r], "%.*s", (int)(len - start), runs[r].dir + start);
        runs[r].name = names[r];
    }
    for (int r = 0; r < n; r++)
        for (int s = 0; s < n; s++)
            if (r != s && strcmp(names[r], names[s]) == 0) runs[r].name = runs[r].dir;
}

static status_t plot_runs(plot_run *runs, int n_runs, const char *prefix)
{
    char(*names)[256] = malloc((size_t)n_runs * sizeof *names);
    FAIL_IF(!names, ST_NOMEM, "plot: out of memory");
    name_runs(runs, n_runs, names);
    plot_text d = {0};
    status_t st = ST_OK;
    for (int r = 0; st == ST_OK && r < n_runs; r++) st = read_metrics(&runs[r], &d);
    char data_path[4200];
    snprintf(data_path, sizeof data_path, "%s.dat", prefix);
    if (st == ST_OK) st = fileio_write_atomic(data_path, d.text, d.len);
    if (st == ST_OK) st = write_script(prefix, runs, n_runs);
    if (st == ST_OK) st = run_gnuplot(prefix);
    for (int r = 0; st == ST_OK && r < n_runs; r++)
        log_info("plot: %s: %d records from %s/metrics.jsonl%s", runs[r].name, runs[r].rows, runs[r].dir,
                 runs[r].has[COL_VAL_LOSS] ? " (with validation loss)" : "");
    if (st == ST_OK) log_info("plot: -> %s.png, %s.svg (data %s.dat, script %s.gp)", prefix, prefix, prefix, prefix);
    free(d.text);
    free(names);
    return st;
}

int cmd_plot(int argc, char **argv)
{
    const char *prefix = NULL;
    const cli_option options[] = {{"out", .text = &prefix}, {0}};
    int first;
    status_t parsed = cli_parse_options("plot", argc, argv, options, NULL, NULL, &first);
    if (parsed != ST_OK) return cli_finish(parsed);
    int n_runs = argc - first;
    if (n_runs < 1) return cli_finish(st_fail(ST_USAGE, "plot: expected one or more RUN_DIRs (see mpilm plot --help)"));
    plot_run *runs = calloc((size_t)n_runs, sizeof *runs);
    if (!runs) return cli_finish(st_fail(ST_NOMEM, "plot: out of memory"));
    for (int r = 0; r < n_runs; r++) runs[r].dir = argv[first + r];
    char default_prefix[4096];
    if (!prefix) {
        /* one run: beside its metrics; several: in the current directory */
        if (n_runs == 1) snprintf(default_prefix, sizeof default_prefix, "%s/curves", runs[0].dir);
        else snprintf(default_prefix, sizeof default_prefix, "curves");
        prefix = default_prefix;
    }
    status_t st = plot_runs(runs, n_runs, prefix);
    free(runs);
    return cli_finish(st);
}
