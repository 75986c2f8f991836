/* tensor/bf16 — conversions and the bf16 GEMM (oneDNN matmul primitives).
 *
 * A GEMM shape (transposes, sizes, strides, beta) maps to one oneDNN matmul
 * primitive with its memory objects, created on the shape's first call and
 * kept: a training step repeats the same few shapes, so every call after the
 * first step only swaps data pointers. The scratchpad is ours (oneDNN's
 * "user" mode): one buffer, grown when a new primitive needs more, so no
 * primitive allocates while it runs. oneDNN runs on the same OpenMP runtime
 * and thread count as BLIS and mpilm's own loops (Debian builds it with
 * OpenMP), one after the other: there is no second pool to oversubscribe. */
#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/bf16.h"
#include "tensor/internal.h"

int bf16_cpu_supported(const char **why)
{
    const char *env = getenv("MPILM_CPU_BF16");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "1") == 0)) {
        if (why) *why = env[0] == '1' ? "MPILM_CPU_BF16=1" : "MPILM_CPU_BF16=0";
        return env[0] == '1';
    }
    __builtin_cpu_init();
    if (__builtin_cpu_supports("amx-bf16")) {
        if (why) *why = "the CPU has AMX-BF16";
        return 1;
    }
    if (__builtin_cpu_supports("avx512bf16")) {
        if (why) *why = "the CPU has AVX512-BF16";
        return 1;
    }
    if (why) *why = "the CPU has neither AVX512-BF16 nor AMX-BF16";
    return 0;
}

enum { CONVERT_CHUNK = 1 << 14 };

void bf16_from_f32(bf16 *dst, const float *src, size_t n)
{
    #pragma omp parallel for schedule(static) if (n > CONVERT_CHUNK)
    for (size_t c = 0; c < n; c += CONVERT_CHUNK) {
        size_t e = c + CONVERT_CHUNK < n ? c + CONVERT_CHUNK : n;
        #pragma omp simd
        for (size_t i = c; i < e; i++) dst[i] = bf16_round(src[i]);
    }
}

void bf16_to_f32(float *dst, const bf16 *src, size_t n)
{
    #pragma omp parallel for schedule(static) if (n > CONVERT_CHUNK)
    for (size_t c = 0; c < n; c += CONVERT_CHUNK) {
        size_t e = c + CONVERT_CHUNK < n ? c + CONVERT_CHUNK : n;
        #pragma omp simd
        for (size_t i = c; i < e; i++) dst[i] = bf16_value(src[i]);
    }
}

void bf16_split(bf16 *hi, uint16_t *lo, const float *src, size_t n)
{
    #pragma omp parallel for schedule(static) if (n > CONVERT_CHUNK)
    for (size_t c = 0; c < n; c += CONVERT_CHUNK) {
        size_t e = c + CONVERT_CHUNK < n ? c + CONVERT_CHUNK : n;
        #pragma omp simd
        for (size_t i = c; i < e; i++) bf16_split_one(src[i], hi + i, lo + i);
    }
}

void bf16_split_hi(bf16 *hi, const float *src, size_t n)
{
    #pragma omp parallel for schedule(static) if (n > CONVERT_CHUNK)
    for (size_t c = 0; c < n; c += CONVERT_CHUNK) {
        size_t e = c + CONVERT_CHUNK < n ? c + CONVERT_CHUNK : n;
        #pragma omp simd
        for (size_t i = c; i < e; i++) {
            uint16_t lo;
            bf16_split_one(src[i], hi + i, &lo);
        }
    }
}

void bf16_join(float *dst, const bf16 *hi, const uint16_t *lo, size_t n)
{
    #pragma omp parallel for schedule(static) if (n > CONVERT_CHUNK)
    for (size_t c = 0; c < n; c += CONVERT_CHUNK) {
        size_t e = c + CONVERT_CHUNK < n ? c + CONVERT_CHUNK : n;
        #pragma omp simd
        for (size_t i = c; i < e; i++) dst[i] = bf16_join_one(hi[i], lo[i]);
    }
}

int bf16_all_finite(const bf16 *hi, size_t n)
{
    uint16_t worst = 0;
    #pragma omp simd reduction(max : worst)
    for (size_t i = 0; i < n; i++) {
        uint16_t b = hi[i] & 0x7FFFu;
        worst = b > worst ? b : worst;
    }
    return worst < 0x7F80u;
}

/* ---- the GEMM ------------------------------------------------------------- */

typedef struct gemm_key {
    int ta, tb, M, N, K, lda, ldb, ldc, beta;
    int f32;  /* operands fp32 (tensor_gemm_onednn_f32) instead of bf16 */
    int c16;  /* the result rounded to bf16 (tensor_gemm_bf16_out16) instead of fp32 */
    int bias; /* an fp32 row (N) added to every row of the result (the _bias variants) */
} gemm_key;

typedef struct gemm_prim {
    gemm_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, scratch, bias;
    uint64_t used; /* the call count when last run (least recently used goes first) */
} gemm_prim;

/* A step repeats a few dozen shapes (the model plans its variable row counts
 * in multiples, model_head.c); past MAX_PRIMS the least recently used
 * primitive is replaced, so an unforeseen stream of shapes costs time (a
 * primitive per call), never an error. */
enum { MAX_PRIMS = 256 };

static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    gemm_prim prims[MAX_PRIMS];
    int n_prims;
    uint64_t calls, evicted;
    void *scratch;
    size_t scratch_size;
} G;

static status_t dnnl_ok(dnnl_status_t s, const char *what)
{
    FAIL_IF(s != dnnl_success, ST_ERROR, "oneDNN: %s failed (status %d)", what, (int)s);
    return ST_OK;
}

static status_t engine_init(void)
{
    if (G.engine) return ST_OK;
    TRY(dnnl_ok(dnnl_engine_create(&G.engine, dnnl_cpu, 0), "creating the CPU engine"));
    return dnnl_ok(dnnl_stream_create(&G.stream, G.engine, dnnl_stream_default_flags), "creating a stream");
}

/* A row-major (rows, cols) operand with row stride ld, transposed when t. */
static status_t md_of(dnnl_memory_desc_t *md, int rows, int cols, int ld, int t, dnnl_data_type_t dt)
{
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {t ? 1 : ld, t ? ld : 1};
    return dnnl_ok(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides), "describing a GEMM operand");
}

static status_t attr_of(dnnl_primitive_attr_t *attr, int beta)
{
    TRY(dnnl_ok(dnnl_primitive_attr_create(attr), "creating primitive attributes"));
    TRY(dnnl_ok(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user), "setting the scratchpad"));
    if (!beta) return ST_OK;
    dnnl_post_ops_t po;
    TRY(dnnl_ok(dnnl_post_ops_create(&po), "creating post-ops"));
    status_t st = dnnl_ok(dnnl_post_ops_append_sum(po, 1.0f), "appending the accumulate post-op");
    if (st == ST_OK) st = dnnl_ok(dnnl_primitive_attr_set_post_ops(*attr, po), "setting post-ops");
    dnnl_post_ops_destroy(po);
    return st;
}

static status_t grow_scratch(size_t need)
{
    if (need <= G.scratch_size) return ST_OK;
    size_t bytes = (need + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(4096, bytes);
    FAIL_IF(!p, ST_NOMEM, "oneDNN: out of memory for a %zu-byte GEMM scratchpad", bytes);
    memset(p, 0, bytes); /* touch the pages now, not inside a step */
    free(G.scratch);
    G.scratch = p;
    G.scratch_size = bytes;
    return ST_OK;
}

static status_t prim_create(gemm_prim *g, const gemm_key *k)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_data_type_t in = k->f32 ? dnnl_f32 : dnnl_bf16;
    TRY(md_of(&a, k->M, k->K, k->lda, k->ta, in));
    TRY(md_of(&b, k->K, k->N, k->ldb, k->tb, in));
    TRY(md_of(&c, k->M, k->N, k->ldc, 0, k->c16 ? dnnl_bf16 : dnnl_f32));
    dnnl_memory_desc_t bias;
    if (k->bias) TRY(md_of(&bias, 1, k->N, k->N, 0, dnnl_f32));
    dnnl_matmul_desc_t desc;
    TRY(dnnl_ok(dnnl_matmul_desc_init(&desc, &a, &b, k->bias ? &bias : NULL, &c), "describing a bf16 matmul"));
    dnnl_primitive_attr_t attr;
    TRY(attr_of(&attr, k->beta));
    dnnl_primitive_desc_t pd;
    status_t st = dnnl_ok(dnnl_primitive_desc_create(&pd, &desc, attr, G.engine, NULL), "creating a bf16 matmul");
    dnnl_primitive_attr_destroy(attr);
    TRY(st);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    st = grow_scratch(smd ? dnnl_memory_desc_get_size(smd) : 0);
    if (st == ST_OK) st = dnnl_ok(dnnl_primitive_create(&g->prim, pd), "creating a bf16 matmul primitive");
    if (st == ST_OK) st = dnnl_ok(dnnl_memory_create(&g->a, &a, G.engine, DNNL_MEMORY_NONE), "a GEMM operand");
    if (st == ST_OK) st = dnnl_ok(dnnl_memory_create(&g->b, &b, G.engine, DNNL_MEMORY_NONE), "a GEMM operand");
    if (st == ST_OK) st = dnnl_ok(dnnl_memory_create(&g->c, &c, G.engine, DNNL_MEMORY_NONE), "a GEMM operand");
    if (st == ST_OK && k->bias)
        st = dnnl_ok(dnnl_memory_create(&g->bias, &bias, G.engine, DNNL_MEMORY_NONE), "a GEMM bias");
    if (st == ST_OK && smd)
        st = dnnl_ok(dnnl_memory_create(&g->scratch, smd, G.engine, DNNL_MEMORY_NONE), "the GEMM scratchpad");
    dnnl_primitive_desc_destroy(pd);
    g->key = *k;
    return st;
}

static void prim_destroy(gemm_prim *g)
{
    if (g->prim) dnnl_primitive_destroy(g->prim);
    dnnl_memory_t mem[5] = {g->a, g->b, g->c, g->scratch, g->bias};
    for (int i = 0; i < 5; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    memset(g, 0, sizeof *g);
}

/* A free slot, or the least recently used primitive's, emptied. */
static gemm_prim *prim_slot(void)
{
    if (G.n_prims < MAX_PRIMS) return &G.prims[G.n_prims++];
    gemm_prim *old = &G.prims[0];
    for (int i = 1; i < MAX_PRIMS; i++)
        if (G.prims[i].used < old->used) old = &G.prims[i];
    prim_destroy(old);
    G.evicted++;
    return old;
}

static status_t prim_find(const gemm_key *k, gemm_prim **out)
{
    G.calls++;
    for (int i = 0; i < G.n_prims; i++)
        if (memcmp(&G.prims[i].key, k, sizeof *k) == 0) {
            *out = &G.prims[i];
            (*out)->used = G.calls;
            return ST_OK;
        }
    TRY(engine_init());
    gemm_prim *g = prim_slot();
    status_t st = prim_create(g, k);
    if (st != ST_OK) {
        prim_destroy(g);
        G.n_prims -= g == &G.prims[G.n_prims - 1];
        return st;
    }
    g->used = G.calls;
    *out = g;
    return ST_OK;
}

/* C = op(A) op(B) (+ bias in every row) + beta C through the primitive of
 * key k (A, B, C of its types). */
static status_t gemm_run(const gemm_key *kk, const void *A, const void *Bm, const float *bias, float beta, void *Cm)
{
    gemm_key k = *kk;
    if (k.M == 0 || k.N == 0) return ST_OK;
    FAIL_IF(beta != 0.0f && beta != 1.0f, ST_ERROR, "tensor_gemm_bf16: beta %g (expected 0 or 1)", beta);
    if (k.K == 0) {
        size_t es = k.c16 ? sizeof(bf16) : sizeof(float);
        for (int i = 0; i < k.M; i++) {
            float *row = (float *)((char *)Cm + (size_t)i * k.ldc * es);
            if (beta == 0.0f && !bias) memset(row, 0, (size_t)k.N * es);
            for (int j = 0; bias && j < k.N; j++) row[j] = beta == 0.0f ? bias[j] : row[j] + bias[j]; /* fp32 C only */
        }
        return ST_OK;
    }
    k.beta = beta != 0.0f;
    k.bias = bias != NULL;
    gemm_prim *g = NULL;
    TRY(prim_find(&k, &g));
    dnnl_memory_set_data_handle(g->a, (void *)A);
    dnnl_memory_set_data_handle(g->b, (void *)Bm);
    dnnl_memory_set_data_handle(g->c, Cm);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, g->a}, {DNNL_ARG_WEIGHTS, g->b}, {DNNL_ARG_DST, g->c}};
    int nargs = 3;
    if (g->bias) {
        dnnl_memory_set_data_handle(g->bias, (void *)bias);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, g->bias};
    }
    if (g->scratch) {
        dnnl_memory_set_data_handle(g->scratch, G.scratch);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, g->scratch};
    }
    TRY(dnnl_ok(dnnl_primitive_execute(g->prim, G.stream, nargs, args), "running a bf16 matmul"));
    return dnnl_ok(dnnl_stream_wait(G.stream), "waiting for a bf16 matmul");
}

status_t tensor_gemm_bf16(int ta, int tb, int M, int N, int K, const bf16 *A, int lda, const bf16 *Bm, int ldb,
                   float beta, float *Cm, int ldc)
{
    gemm_key k = {ta, tb, M, N, K, lda, ldb, ldc, 0, 0, 0, 0};
    return gemm_run(&k, A, Bm, NULL, beta, Cm);
}

status_t tensor_gemm_bf16_bias(int ta, int tb, int M, int N, int K, const bf16 *A, int lda, const bf16 *Bm, int ldb,
                               const float *bias, float *Cm, int ldc)
{
    gemm_key k = {ta, tb, M, N, K, lda, ldb, ldc, 0, 0, 0, 0};
    return gemm_run(&k, A, Bm, bias, 0.0f, Cm);
}

status_t tensor_gemm_bf16_out16(int ta, int tb, int M, int N, int K, const bf16 *A, int lda, const bf16 *Bm, int ldb,
                                bf16 *Cm, int ldc)
{
    gemm_key k = {ta, tb, M, N, K, lda, ldb, ldc, 0, 0, 1, 0};
    return gemm_run(&k, A, Bm, NULL, 0.0f, Cm);
}

status_t tensor_gemm_onednn_f32(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *Bm, int ldb,
                         float beta, float *Cm, int ldc)
{
    gemm_key k = {ta, tb, M, N, K, lda, ldb, ldc, 0, 1, 0, 0};
    return gemm_run(&k, A, Bm, NULL, beta, Cm);
}

status_t tensor_gemm_onednn_f32_bias(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *Bm,
                                     int ldb, const float *bias, float *Cm, int ldc)
{
    gemm_key k = {ta, tb, M, N, K, lda, ldb, ldc, 0, 1, 0, 0};
    return gemm_run(&k, A, Bm, bias, 0.0f, Cm);
}

int tensor_gemm_bf16_primitives(void) { return G.n_prims; }
uint64_t tensor_gemm_bf16_evictions(void) { return G.evicted; }

void tensor_gemm_bf16_shutdown(void)
{
    for (int i = 0; i < G.n_prims; i++) prim_destroy(&G.prims[i]);
    if (G.stream) dnnl_stream_destroy(G.stream);
    if (G.engine) dnnl_engine_destroy(G.engine);
    free(G.scratch);
    memset(&G, 0, sizeof G);
    thread_buffers_release();
}
