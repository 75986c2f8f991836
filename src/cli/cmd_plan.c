/* mpilm plan: every layout of N ranks for a configuration before the job
 * (train/plan.h), as a ranked table or JSON. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tensor/tensor.h"
#include "train/plan.h"

typedef struct plan_cli {
    const char *config_path, *net;
    char **sets;
    int n_sets, json;
    plan_options o;
} plan_cli;

/* --net GBIT_S,LATENCY_US */
static status_t parse_net(const char *text, plan_net *net)
{
    double gbit, us;
    char extra;
    FAIL_IF(sscanf(text, "%lf,%lf%c", &gbit, &us, &extra) != 2 || !(gbit > 0) || !(us >= 0) || gbit > 1e6 || us > 1e6,
            ST_USAGE, "plan: --net '%s' (expected GBIT_S,LATENCY_US, e.g. 100,2 for 100 Gbit/s and 2 us)", text);
    *net = plan_net_given(gbit, us);
    return ST_OK;
}

/* --set (kept in order), --np and --mem-per-rank */
static status_t set_option(void *ctx, int key, const char *text, double number)
{
    plan_cli *p = ctx;
    if (key == 's') p->sets[p->n_sets++] = (char *)text;
    if (key == 'n') p->o.np = (int)number;
    if (key == 'm') p->o.rank_mib = number;
    return ST_OK;
}

static status_t parse_options(int argc, char **argv, plan_cli *p)
{
    p->net = "100,2";
    const cli_option options[] = {
        {"config", .text = &p->config_path},
        {"set", .key = 's'},
        {"np", .key = 'n', .min = 1, .max = 4096, .integer = 1},
        {"json", .flag = &p->json},
        {"net", .text = &p->net},
        {"mem-per-rank", .key = 'm', .min = 1, .max = 1e9},
        {0},
    };
    p->sets = calloc((size_t)argc, sizeof *p->sets);
    FAIL_IF(!p->sets, ST_NOMEM, "out of memory parsing options");
    int first;
    TRY(cli_parse_options("plan", argc, argv, options, set_option, p, &first));
    FAIL_IF(first < argc, ST_USAGE, "plan: unexpected argument '%s' (see mpilm plan --help)", argv[first]);
    FAIL_IF(!p->config_path, ST_USAGE, "plan: --config FILE is required (examples in launch/configs/)");
    FAIL_IF(!p->o.np, ST_USAGE, "plan: --np N is required (the ranks of the job to plan)");
    if (strcmp(p->net, "measure") == 0) return ST_OK; /* after MPI_Init */
    return parse_net(p->net, &p->o.net);
}

/* --net measure: every rank of this launch measures; rank 0 plans and prints
 * while the others wait without spinning (the cost measurement wants the
 * cores), then all leave together. */
static status_t measure_net(plan_cli *p, int *planner)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    *planner = rank == 0;
    TRY(plan_measure_network(MPI_COMM_WORLD, &p->o));
    if (rank == 0) return ST_OK;
    MPI_Request req;
    FAIL_IF(MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS, ST_MPI, "plan: MPI_Ibarrier failed");
    for (int done = 0; !done;) {
        FAIL_IF(MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS, ST_MPI, "plan: MPI_Test failed");
        if (!done) usleep(10000);
    }
    return ST_OK;
}

static void release_waiting_ranks(void)
{
    MPI_Request req;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &req) == MPI_SUCCESS) MPI_Wait(&req, MPI_STATUS_IGNORE);
}

static const char *schedule_name(const plan_layout *l)
{
    return l->pp == 1 ? "-" : l->schedule == DIST_GPIPE ? "gpipe" : "1f1b";
}

static void print_table(const train_config *tc, const plan_cli *p, const plan_result *r)
{
    const model_config *mc = &tc->model;
    printf("plan: %s (model.family) of %d layers, d_model %d, at %d ranks; global batch %d sequences of %d tokens; %s; "
           "%d thread%s per rank\n", model_family_name(mc->family), mc->n_layer, mc->d_model, p->o.np, r->global_batch,
           mc->seq_len, mc->bf16 ? "bf16" : "fp32", p->o.threads, p->o.threads == 1 ? "" : "s");
    printf("costs per micro-batch of %d, forward + backward (%s): block %.2f ms, embeddings %.2f ms, heads %.2f ms\n",
           tc->micro_batch, r->measured ? "measured now, then cached" : "from this machine's cache", 1e3 * r->block_s,
           1e3 * r->embed_s, 1e3 * r->head_s);
    const plan_net *w = &p->o.net;
    if (w->measured)
        printf("network (measured among this launch's ranks): %.3g us, point-to-point %.4g Gbit/s, reduce-scatter "
               "%.4g Gbit/s, all-gather %.4g Gbit/s per rank\n", w->latency_s * 1e6, w->bytes_per_s * 8e-9,
               w->reduce_bytes_per_s * 8e-9, w->gather_bytes_per_s * 8e-9);
    else
        printf("network: %.4g Gbit/s, %.3g us (--net)\n", w->bytes_per_s * 8e-9, w->latency_s * 1e6);
    printf("a rank may use %.0f MiB (%s)\n", r->rank_budget_mib, r->budget_source);
    printf("\n  pp  dp  tp zero schedule    m   tokens/s    step s  bubble  peak MiB  sent MiB/step\n");
    for (int i = 0; i < r->n; i++) {
        const plan_layout *l = &r->layouts[i];
        if (!l->ok) continue;
        printf("%c %2d  %2d  %2d  %3d  %-8s %4d  %9.0f  %8.3f  %5.1f%%  %8.0f  %8.1f\n", l->configured ? '*' : ' ',
               l->pp, l->dp, l->tp, l->zero, schedule_name(l), l->m, l->tokens_per_s, l->step_s, 100 * l->bubble,
               l->peak_mib, l->sent_mib);
    }
    int refused = 0;
    for (int i = 0; i < r->n; i++) refused += !r->layouts[i].ok;
    if (refused) printf("\nrefused:\n");
    for (int i = 0; i < r->n; i++) {
        const plan_layout *l = &r->layouts[i];
        if (!l->ok)
            printf("%c pp %d dp %d tp %d zero %d %s: %s\n", l->configured ? '*' : ' ', l->pp, l->dp, l->tp, l->zero,
                   schedule_name(l), l->why);
    }
    printf("\n* = the configuration's own layout (dist.pp, dist.tp, dist.dp, dist.zero, dist.schedule)\n");
}

static status_t print_json(const train_config *tc, const plan_cli *p, const plan_result *r)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "layouts");
    cJSON_AddNumberToObject(root, "np", p->o.np);
    cJSON_AddNumberToObject(root, "global_batch", r->global_batch);
    cJSON_AddNumberToObject(root, "seq_len", tc->model.seq_len);
    cJSON_AddStringToObject(root, "precision", tc->model.bf16 ? "bf16" : "fp32");
    cJSON_AddNumberToObject(root, "threads_per_rank", p->o.threads);
    cJSON_AddNumberToObject(root, "net_gbit_s", p->o.net.bytes_per_s * 8e-9);
    cJSON_AddNumberToObject(root, "net_latency_us", p->o.net.latency_s * 1e6);
    cJSON_AddBoolToObject(root, "net_measured", p->o.net.measured);
    cJSON_AddNumberToObject(root, "net_reduce_gbit_s", p->o.net.reduce_bytes_per_s * 8e-9);
    cJSON_AddNumberToObject(root, "net_gather_gbit_s", p->o.net.gather_bytes_per_s * 8e-9);
    cJSON_AddNumberToObject(root, "rank_budget_mib", r->rank_budget_mib);
    cJSON_AddNumberToObject(root, "block_ms", 1e3 * r->block_s);
    cJSON_AddNumberToObject(root, "embed_ms", 1e3 * r->embed_s);
    cJSON_AddNumberToObject(root, "head_ms", 1e3 * r->head_s);
    for (int i = 0; i < r->n; i++) {
        const plan_layout *l = &r->layouts[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddNumberToObject(o, "pp", l->pp);
        cJSON_AddNumberToObject(o, "dp", l->dp);
        cJSON_AddNumberToObject(o, "tp", l->tp);
        cJSON_AddNumberToObject(o, "zero", l->zero);
        cJSON_AddStringToObject(o, "schedule", schedule_name(l));
        cJSON_AddBoolToObject(o, "configured", l->configured);
        cJSON_AddBoolToObject(o, "ok", l->ok);
        if (!l->ok) {
            cJSON_AddStringToObject(o, "why", l->why);
            continue;
        }
        cJSON_AddNumberToObject(o, "micro_batches", l->m);
        cJSON_AddNumberToObject(o, "tokens_per_s", l->tokens_per_s);
        cJSON_AddNumberToObject(o, "step_s", l->step_s);
        cJSON_AddNumberToObject(o, "bubble", l->bubble);
        cJSON_AddNumberToObject(o, "peak_mib", l->peak_mib);
        cJSON_AddNumberToObject(o, "sent_mib_per_step", l->sent_mib);
        cJSON *ranks = cJSON_AddArrayToObject(o, "per_rank_peak_mib");
        for (int k = 0; k < p->o.np; k++) cJSON_AddItemToArray(ranks, cJSON_CreateNumber(l->rank_mib[k]));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FAIL_IF(!text, ST_NOMEM, "plan: out of memory writing JSON");
    puts(text);
    free(text);
    return ST_OK;
}

int cmd_plan(int argc, char **argv)
{
    plan_cli p = {0};
    status_t st = parse_options(argc, argv, &p);
    config *cfg = NULL;
    if (st == ST_OK) st = cli_load_config(&cfg, p.config_path, p.sets, p.n_sets);
    free(p.sets);
    if (st != ST_OK) return cli_finish(st);
    cli_mpi_init(&argc, &argv);
    static train_config tc;
    st = train_config_load(cfg, &tc);
    config_free(cfg);
    tensor_runtime rt;
    /* run.threads = auto as the job's ranks will resolve it: this node's cores
       shared by the ranks that land on a node like it */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = cores > 0 && p.o.np > cores ? (int)cores : p.o.np;
    if (st == ST_OK) st = tensor_runtime_init(tc.threads, local, &rt);
    p.o.threads = rt.threads;
    /* --net measure: after the runtime's start-up, as a training rank's baseline is taken */
    int planner = 1, measured = strcmp(p.net, "measure") == 0;
    if (st == ST_OK && measured) st = measure_net(&p, &planner);
    if (st != ST_OK || !planner) return cli_finish(st);
    plan_result r;
    if (st == ST_OK) st = plan_layouts(&tc, &p.o, &r);
    if (st == ST_OK) {
        if (p.json) st = print_json(&tc, &p, &r);
        else print_table(&tc, &p, &r);
        plan_result_free(&r);
    }
    if (measured) release_waiting_ranks();
    return cli_finish(st);
}
