/* base/: status, config, rng, hash, atomic file I/O. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/bigmem.h"
#include "base/config.h"
#include "base/fileio.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/rng.h"
#include "base/status.h"

/* ---- status ---------------------------------------------------------------- */

static status_t failing_inner(void) { return st_fail(ST_FORMAT, "x.zst: bad magic at byte 0 (expected %d, found %d)", 1, 2); }
static status_t failing_outer(void)
{
    TRY(failing_inner());
    return ST_OK;
}

Test(status, fail_records_message_and_try_forwards_code)
{
    cr_assert_eq(failing_outer(), ST_FORMAT);
    cr_assert_str_eq(st_message(), "x.zst: bad magic at byte 0 (expected 1, found 2)");
    st_context(ST_FORMAT, "loading dataset d: ");
    cr_assert_str_eq(st_message(), "loading dataset d: x.zst: bad magic at byte 0 (expected 1, found 2)");
}

Test(status, exit_codes_follow_the_contract)
{
    cr_assert_eq(st_exit_code(ST_OK), 0);
    cr_assert_eq(st_exit_code(ST_IO), 1);
    cr_assert_eq(st_exit_code(ST_FORMAT), 1);
    cr_assert_eq(st_exit_code(ST_USAGE), 2);
    cr_assert_eq(st_exit_code(ST_CONFIG), 2);
    cr_assert_eq(st_exit_code(ST_PREEMPTED), 75);
}

Test(status, die_prints_message_and_exits_with_code, .exit_code = 2)
{
    st_fail(ST_CONFIG, "a.ini:3: bad value");
    st_die(ST_CONFIG);
}

/* ---- config ---------------------------------------------------------------- */

static const config_key schema[] = {
    {"model", "family", CFG_ENUM, "gpt", "gpt|bert", 1, 0, ""},
    {"model", "n_layer", CFG_INT, "4", NULL, 1, 64, ""},
    {"model", "dropout", CFG_FLOAT, "0.1", NULL, 0, 1, ""},
    {"model", "recompute", CFG_BOOL, "false", NULL, 1, 0, ""},
    {"run", "name", CFG_STRING, "run", NULL, 1, 0, ""},
    {"run", "threads", CFG_INT, "auto", "auto", 1, 256, ""},
};
#define N_SCHEMA ((int)(sizeof schema / sizeof schema[0]))

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/mpilm-test-base-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *write_ini(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text as a config file; returns the status and leaves the message. */
static status_t load_text(const char *text, config **out)
{
    config *c = config_new(schema, N_SCHEMA);
    status_t st = config_load_file(c, write_ini("c.ini", text));
    if (out) *out = c;
    else config_free(c);
    return st;
}

TestSuite(config, .init = make_tmp_dir, .fini = remove_tmp_dir);

Test(config, defaults_and_typed_getters)
{
    config *c = config_new(schema, N_SCHEMA);
    cr_assert_str_eq(config_str(c, "model.family"), "gpt");
    cr_assert_eq(config_int(c, "model.n_layer"), 4);
    cr_assert_float_eq(config_float(c, "model.dropout"), 0.1, 1e-12);
    cr_assert_eq(config_bool(c, "model.recompute"), 0);
    cr_assert_eq(config_int(c, "run.threads"), -1, "auto reads back as -1");
    cr_assert_str_eq(config_origin(c, "model.n_layer"), "default");
    config_free(c);
}

Test(config, file_values_comments_and_set_override)
{
    config *c;
    cr_assert_eq(load_text("; comment\n[model]\nfamily = bert  # trailing\nn_layer=12\r\n\n[run]\nname = a b\n", &c), ST_OK,
                 "%s", st_message());
    cr_assert_str_eq(config_str(c, "model.family"), "bert");
    cr_assert_eq(config_int(c, "model.n_layer"), 12);
    cr_assert_str_eq(config_str(c, "run.name"), "a b");
    cr_assert(strstr(config_origin(c, "model.n_layer"), "c.ini:4"));
    cr_assert_eq(config_set_arg(c, "model.n_layer=6"), ST_OK);
    cr_assert_eq(config_int(c, "model.n_layer"), 6);
    cr_assert_str_eq(config_origin(c, "model.n_layer"), "--set model.n_layer=6");
    config_free(c);
}

/* An enum that extends a boolean (false|...|true, as model.recompute) takes
 * every boolean spelling for false and true and stores the name; other
 * values are refused naming the choices. */
Test(config, an_enum_with_false_and_true_takes_boolean_spellings)
{
    static const config_key grown[] = {{"model", "recompute", CFG_ENUM, "false", "false|ffn|true", 1, 0, ""},
                                       {"model", "family", CFG_ENUM, "gpt", "gpt|bert", 1, 0, ""}};
    config *c = config_new(grown, 2);
    const char *in[] = {"yes", "on", "1", "true", "no", "off", "0", "false", "ffn"};
    const char *want[] = {"true", "true", "true", "true", "false", "false", "false", "false", "ffn"};
    for (int i = 0; i < 9; i++) {
        char arg[64];
        snprintf(arg, sizeof arg, "model.recompute=%s", in[i]);
        cr_assert_eq(config_set_arg(c, arg), ST_OK, "%s: %s", arg, st_message());
        cr_assert_str_eq(config_str(c, "model.recompute"), want[i], "%s", arg);
    }
    cr_assert_eq(config_set_arg(c, "model.recompute=ffm"), ST_CONFIG);
    cr_assert(strstr(st_message(), "expected one of false|ffn|true, found 'ffm'"), "%s", st_message());
    cr_assert_eq(config_set_arg(c, "model.family=yes"), ST_CONFIG, "a plain enum takes no boolean");
    config_free(c);
}

Test(config, unknown_key_names_file_line_and_valid_keys)
{
    cr_assert_eq(load_text("[model]\nn_layer = 2\nn_layers = 3\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:3: unknown key 'n_layers' in [model]"), "%s", st_message());
    cr_assert(strstr(st_message(), "valid: family, n_layer, dropout, recompute"), "%s", st_message());
}

Test(config, bad_number_names_file_line_and_expected)
{
    cr_assert_eq(load_text("[model]\n\nn_layer = 3x\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:3: bad value for model.n_layer (expected an integer"), "%s", st_message());
    cr_assert_eq(load_text("[model]\ndropout = lots\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:2: bad value for model.dropout (expected a number, found 'lots')"), "%s",
              st_message());
}

Test(config, out_of_range_and_bad_choice)
{
    cr_assert_eq(load_text("[model]\nn_layer = 0\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:2: model.n_layer = 0 is out of range (expected 1 to 64)"), "%s", st_message());
    cr_assert_eq(load_text("[model]\nfamily = t5\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "expected one of gpt|bert, found 't5'"), "%s", st_message());
    cr_assert_eq(load_text("[model]\nrecompute = maybe\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "expected true or false"), "%s", st_message());
}

Test(config, missing_file_is_named)
{
    config *c = config_new(schema, N_SCHEMA);
    cr_assert_eq(config_load_file(c, "/nonexistent/x.ini"), ST_CONFIG);
    cr_assert(strstr(st_message(), "/nonexistent/x.ini: cannot read the config file (No such file or directory)"), "%s",
              st_message());
    config_free(c);
}

Test(config, duplicate_section_and_key_are_errors)
{
    cr_assert_eq(load_text("[model]\nn_layer = 2\n[run]\n[model]\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:4: duplicate section [model]"), "%s", st_message());
    cr_assert_eq(load_text("[model]\nn_layer = 2\nn_layer = 3\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:3: duplicate key model.n_layer"), "%s", st_message());
}

Test(config, syntax_errors)
{
    cr_assert_eq(load_text("n_layer = 2\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:1: key 'n_layer' before any [section]"), "%s", st_message());
    cr_assert_eq(load_text("[model\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:1: malformed section header"), "%s", st_message());
    cr_assert_eq(load_text("[model]\njust words\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:2: expected 'key = value'"), "%s", st_message());
    cr_assert_eq(load_text("[optimizer]\n", NULL), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:1: unknown section [optimizer] (valid: model, run)"), "%s", st_message());
}

Test(config, nul_byte_is_refused_naming_file_line_and_offset)
{
    config *c = config_new(schema, N_SCHEMA);
    char path[512];
    snprintf(path, sizeof path, "%s/nul.ini", tmp_dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    static const char text[] = "[model]\nn_layer = 2\nfamily = \0bert\n[run]\nname = x\n";
    fwrite(text, 1, sizeof text - 1, f);
    fclose(f);
    cr_assert_eq(config_load_file(c, path), ST_CONFIG, "a config with a NUL must not be cut short there");
    cr_assert(strstr(st_message(), "nul.ini:3: a NUL byte at byte offset 29 (expected text)"), "%s", st_message());
    cr_assert_eq(config_int(c, "model.n_layer"), 4, "nothing of a refused file is applied");
    config_free(c);
    snprintf(path, sizeof path, "%s/first.ini", tmp_dir);
    f = fopen(path, "wb");
    fwrite("\0[model]\nn_layer = 2\n", 1, 22, f);
    fclose(f);
    c = config_new(schema, N_SCHEMA);
    cr_assert_eq(config_load_file(c, path), ST_CONFIG, "a leading NUL used to load as an empty file");
    cr_assert(strstr(st_message(), "first.ini:1: a NUL byte at byte offset 0"), "%s", st_message());
    config_free(c);
}

Test(config, keys_given_counts_file_and_set_values)
{
    config *c;
    cr_assert_eq(load_text("; only a comment\n[model]\n", &c), ST_OK, "%s", st_message());
    cr_assert_eq(config_n_given(c), 0);
    cr_assert_eq(config_set_arg(c, "model.n_layer=6"), ST_OK);
    cr_assert_eq(config_n_given(c), 1);
    config_free(c);
    cr_assert_eq(load_text("[model]\nn_layer = 2\n[run]\nname = a\n", &c), ST_OK, "%s", st_message());
    cr_assert_eq(config_n_given(c), 2);
    config_free(c);
}

Test(config, bad_set_arguments)
{
    config *c = config_new(schema, N_SCHEMA);
    cr_assert_eq(config_set_arg(c, "n_layer=3"), ST_CONFIG);
    cr_assert(strstr(st_message(), "expected section.key=value"), "%s", st_message());
    cr_assert_eq(config_set_arg(c, "model.heads=3"), ST_CONFIG);
    cr_assert(strstr(st_message(), "--set model.heads=3: unknown key 'heads' in [model]"), "%s", st_message());
    cr_assert_eq(config_int(c, "model.n_layer"), 4, "a failed --set changes nothing");
    config_free(c);
}

Test(config, printed_config_loads_back_to_the_same_values)
{
    config *c;
    cr_assert_eq(load_text("[model]\nfamily = bert\nn_layer = 7\n[run]\nthreads = 3\n", &c), ST_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/printed.ini", tmp_dir);
    FILE *f = fopen(path, "w");
    config_print(c, f, 1);
    fclose(f);
    config *d = config_new(schema, N_SCHEMA);
    cr_assert_eq(config_load_file(d, path), ST_OK, "%s", st_message());
    cr_assert_str_eq(config_str(d, "model.family"), "bert");
    cr_assert_eq(config_int(d, "model.n_layer"), 7);
    cr_assert_eq(config_int(d, "run.threads"), 3);
    config_free(c);
    config_free(d);
}

/* Found by tests/fuzz (config): "name =;x" loaded as ";x", printed as "name = ;x", which loads back as "". */
Test(config, value_a_printed_config_would_cut_is_refused)
{
    config *c;
    cr_assert_eq(load_text("[run]\nname =;x\n", &c), ST_CONFIG);
    cr_assert(strstr(st_message(), "c.ini:2: the value of run.name has a ';' at its start"), "%s", st_message());
    config_free(c);
    c = config_new(schema, N_SCHEMA);
    cr_assert_eq(config_set_arg(c, "run.name=a #b"), ST_CONFIG);
    cr_assert(strstr(st_message(), "a '#' at its start or after a space (found 'a #b')"), "%s", st_message());
    cr_assert_eq(config_set_arg(c, "run.name=a;b#c"), ST_OK, "marks inside a word are not comments");
    cr_assert_str_eq(config_str(c, "run.name"), "a;b#c");
    config_free(c);
}

/* ---- rng ------------------------------------------------------------------- */

/* Known-answer vectors of Random123's kat_vectors (Salmon et al., SC'11). */
Test(rng, philox4x32_10_known_answers)
{
    static const uint32_t vectors[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        rng_philox4x32_10(vectors[v], vectors[v] + 4, out);
        for (int i = 0; i < 4; i++) cr_assert_eq(out[i], vectors[v][6 + i], "vector %d word %d: %08x", v, i, out[i]);
    }
}

Test(rng, draws_are_pure_functions_of_key_and_counter)
{
    rng_key a = rng_key_make(42, RNG_MASK), b = rng_key_make(42, RNG_NSP), c = rng_key_make(43, RNG_MASK);
    uint32_t x[4], y[4], z[4], w[4];
    rng_bits(a, 1000, 5, 0, x);
    rng_bits(b, 1000, 5, 0, z);
    rng_bits(c, 1000, 5, 0, w);
    rng_bits(a, 999, 5, 0, y); /* a draw in between must not change the next */
    uint32_t again[4];
    rng_bits(a, 1000, 5, 0, again);
    cr_assert_arr_eq(x, again, sizeof x);
    cr_assert(memcmp(x, y, sizeof x) != 0, "counters give independent draws");
    rng_bits(a, 1000, 6, 0, y);
    cr_assert(memcmp(x, y, sizeof x) != 0, "every counter word counts");
    rng_bits(a, 1000, 5, 1, y);
    cr_assert(memcmp(x, y, sizeof x) != 0, "every counter word counts");
    cr_assert(memcmp(x, z, sizeof x) != 0, "purposes give independent streams");
    cr_assert(memcmp(x, w, sizeof x) != 0, "seeds give independent streams");
}

Test(rng, uniform_below_and_normal_statistics)
{
    rng_key key = rng_key_make(7, RNG_TEST);
    enum { N = 200000 };
    double sum = 0, sum_normal = 0, sum_normal2 = 0;
    int counts[10] = {0};
    for (uint32_t i = 0; i < N; i++) {
        uint32_t bits[4];
        rng_bits(key, i, 0, 0, bits);
        sum += rng_uniform(bits[0]);
        counts[rng_below(bits[1], 10)]++;
        float z[2];
        rng_normal2(bits[2], bits[3], z);
        sum_normal += z[0] + z[1];
        sum_normal2 += z[0] * z[0] + z[1] * z[1];
    }
    cr_assert_float_eq(sum / N, 0.5, 0.005);
    for (int k = 0; k < 10; k++) cr_assert_float_eq(counts[k] / (double)N, 0.1, 0.004, "bucket %d", k);
    cr_assert_float_eq(sum_normal / (2.0 * N), 0.0, 0.01);
    cr_assert_float_eq(sum_normal2 / (2.0 * N), 1.0, 0.01);
}

/* The ends of the maps, exactly: random draws almost never reach them. */
Test(rng, uniform_and_below_map_the_whole_word_exactly)
{
    cr_assert_eq(rng_uniform(0), 0.0f);
    cr_assert_eq(rng_uniform(0x80000000u), 0.5f);
    cr_assert_eq(rng_uniform(0xffffffffu), 1.0f - 1.0f / 16777216.0f, "largest draw %.9g", rng_uniform(0xffffffffu));
    cr_assert_eq(rng_below(0, 10), 0u);
    cr_assert_eq(rng_below(0x80000000u, 10), 5u);
    cr_assert_eq(rng_below(0xffffffffu, 10), 9u);
    cr_assert_eq(rng_below(0xffffffffu, 1), 0u);
}

Test(rng, fill_normal_is_deterministic_and_scaled)
{
    enum { N = 4099 };
    static float a[N], b[N];
    rng_key key = rng_key_make(1, RNG_INIT);
    rng_fill_normal(key, 3, 0.02f, a, N);
    /* element i is std times normal i of the stream: 4 per counter value */
    for (uint32_t i = 0; i < 8; i += 4) {
        uint32_t bits[4];
        float z[4];
        rng_bits(key, 3, i / 4, 0, bits);
        rng_normal2(bits[0], bits[1], z);
        rng_normal2(bits[2], bits[3], z + 2);
        for (int j = 0; j < 4; j++) cr_assert_eq(a[i + j], 0.02f * z[j], "element %u", i + j);
    }
    /* a window starting anywhere is the same slice of the stream */
    rng_fill_normal_at(key, 3, 0.02f, 1001, b, N - 1001);
    cr_assert_arr_eq(a + 1001, b, (N - 1001) * sizeof(float));
    rng_fill_normal(key, 4, 0.02f, b, N);
    cr_assert(memcmp(a, b, sizeof a) != 0, "streams give independent values");
    double s2 = 0;
    for (int i = 0; i < N; i++) s2 += (double)a[i] * a[i];
    cr_assert_float_eq(s2 / N, 0.0004, 0.00004);
}

/* ---- hash ------------------------------------------------------------------ */

Test(hash, xxh3_known_value_hex_and_file)
{
    cr_assert_eq(hash_xxh3("", 0), 0x2D06800538D394C2ull, "XXH3-64 of the empty input");
    char hex[17];
    uint64_t back;
    hash_to_hex(0x0123456789abcdefull, hex);
    cr_assert_str_eq(hex, "0123456789abcdef");
    cr_assert(hash_from_hex(hex, &back));
    cr_assert_eq(back, 0x0123456789abcdefull);
    cr_assert_not(hash_from_hex("0123", &back));
    cr_assert_not(hash_from_hex("0123456789abcdeg", &back));

    make_tmp_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/h.bin", tmp_dir);
    static char data[200000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 31);
    cr_assert_eq(fileio_write_atomic(path, data, sizeof data), ST_OK);
    uint64_t h;
    cr_assert_eq(hash_file(path, &h), ST_OK);
    cr_assert_eq(h, hash_xxh3(data, sizeof data));
    hash_stream *s = hash_stream_new();
    hash_stream_update(s, data, 1000);
    hash_stream_update(s, data + 1000, sizeof data - 1000);
    cr_assert_eq(hash_stream_digest(s), h);
    hash_stream_free(s);
    cr_assert_eq(hash_file("/nonexistent/h.bin", &h), ST_IO);
    cr_assert(strstr(st_message(), "/nonexistent/h.bin"));
    remove_tmp_dir();
}

/* ---- atomic file I/O ------------------------------------------------------- */

TestSuite(fileio, .init = make_tmp_dir, .fini = remove_tmp_dir);

static void assert_content(const char *path, const char *want)
{
    char *data;
    size_t len;
    cr_assert_eq(fileio_read_file(path, &data, &len), ST_OK, "%s", st_message());
    cr_assert_eq(len, strlen(want));
    cr_assert_str_eq(data, want);
    free(data);
}

Test(fileio, atomic_write_replaces_content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", tmp_dir);
    cr_assert_eq(fileio_write_atomic(path, "old", 3), ST_OK);
    cr_assert_eq(fileio_write_atomic(path, "new content", 11), ST_OK);
    assert_content(path, "new content");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/.f.txt.tmp", tmp_dir);
    cr_assert_neq(access(tmp, F_OK), 0, "no temporary file is left behind");
}

/* A child process writes new content and is killed at the given phase. */
static void crash_while_writing(const char *path, const char *phase)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        setenv("MPILM_TEST_CRASH", phase, 1);
        fileio_write_atomic(path, "half-written new content", 24);
        _exit(0); /* not reached when the crash point fires */
    }
    int wstatus;
    cr_assert_eq(waitpid(pid, &wstatus, 0), pid);
    cr_assert(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL, "the child was killed at %s", phase);
}

static void on_alarm(int sig) { (void)sig; }

/* MPILM_TEST_PAUSE=PHASE:SECONDS holds a phase the whole time, though a
 * signal arrives in between (as a second preemption signal does in
 * tests/integration/ckpt_preempt.sh); other phases do not pause. */
Test(fileio, test_pause_holds_its_phase_through_signals)
{
    struct sigaction sa = {.sa_handler = on_alarm};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    setenv("MPILM_TEST_PAUSE", "atomic:before_rename:0.3", 1);
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fileio_crash_point("atomic:before_fsync");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ualarm(50000, 0);
    fileio_crash_point("atomic:before_rename");
    clock_gettime(CLOCK_MONOTONIC, &t2);
    unsetenv("MPILM_TEST_PAUSE");
    double other = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double held = (double)(t2.tv_sec - t1.tv_sec) + 1e-9 * (double)(t2.tv_nsec - t1.tv_nsec);
    cr_expect(other < 0.05, "another phase paused %.3f s", other);
    cr_expect(held >= 0.3, "the phase was held %.3f s of 0.3 (a signal came at 0.05 s)", held);
}

Test(fileio, crash_before_rename_leaves_old_file_intact)
{
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", tmp_dir);
    cr_assert_eq(fileio_write_atomic(path, "old", 3), ST_OK);
    crash_while_writing(path, "atomic:before_fsync");
    assert_content(path, "old");
    crash_while_writing(path, "atomic:before_rename");
    assert_content(path, "old");
    /* The next writer replaces the stale temporary file and succeeds. */
    cr_assert_eq(fileio_write_atomic(path, "next", 4), ST_OK);
    assert_content(path, "next");
}

Test(fileio, crash_after_rename_has_the_complete_new_file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", tmp_dir);
    cr_assert_eq(fileio_write_atomic(path, "old", 3), ST_OK);
    crash_while_writing(path, "atomic:before_dir_fsync");
    assert_content(path, "half-written new content");
}

Test(fileio, errors_name_the_path)
{
    cr_assert_eq(fileio_write_atomic("/nonexistent-dir/x", "a", 1), ST_IO);
    cr_assert(strstr(st_message(), "/nonexistent-dir/x: cannot create temporary file"), "%s", st_message());
    char *data;
    size_t len;
    cr_assert_eq(fileio_read_file("/nonexistent-dir/y", &data, &len), ST_IO);
    cr_assert(strstr(st_message(), "/nonexistent-dir/y: cannot open"), "%s", st_message());
}

Test(fileio, disk_full_is_reported_and_old_file_kept)
{
    /* /dev/full fails every write with ENOSPC; emulate a full disk through
     * a writer whose FILE is redirected there. */
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", tmp_dir);
    cr_assert_eq(fileio_write_atomic(path, "old", 3), ST_OK);
    atomic_file af;
    cr_assert_eq(fileio_atomic_open(&af, path), ST_OK);
    fclose(af.f);
    af.f = fopen("/dev/full", "w");
    cr_assert_not_null(af.f);
    static char big[1 << 16];
    status_t st = fileio_atomic_write(&af, big, sizeof big);
    if (st == ST_OK) st = fileio_atomic_commit(&af);
    else fileio_atomic_abort(&af);
    cr_assert_eq(st, ST_IO);
    cr_assert(strstr(st_message(), "disk is full"), "%s", st_message());
    assert_content(path, "old");
}

Test(fileio, make_dirs_creates_nested_directories)
{
    char path[512];
    snprintf(path, sizeof path, "%s/a/b/c", tmp_dir);
    cr_assert_eq(fileio_make_dirs(path, 0755), ST_OK);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert(S_ISDIR(sb.st_mode));
    cr_assert_eq(fileio_make_dirs(path, 0755), ST_OK, "existing directories are fine");
}

/* ---- log ------------------------------------------------------------------- */

Test(log, level_names)
{
    cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("error"), LOG_ERROR);
    cr_assert_eq(log_level_parse("verbose"), -1);
}

/* ---- bigmem ---------------------------------------------------------------- */

/* The kB of AnonHugePages /proc/self/smaps gives the mapping holding p. */
static long huge_kb_at(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert(f);
    char line[512];
    int inside = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (unsigned long)p >= lo && (unsigned long)p < hi;
        } else if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

Test(bigmem, buffers_are_zeroed_aligned_and_on_huge_pages_where_the_kernel_allows)
{
    size_t big = 8u << 20;
    unsigned char *p = bigmem_alloc(big), *q = bigmem_alloc(100);
    cr_assert(p && q);
    cr_assert_eq((uintptr_t)p % (2u << 20), 0, "a buffer of 8 MiB is not 2 MiB aligned");
    cr_assert_eq((uintptr_t)q % 64, 0);
    size_t nonzero = 0;
    for (size_t i = 0; i < big; i++) nonzero += p[i] != 0;
    for (size_t i = 0; i < 100; i++) nonzero += q[i] != 0;
    cr_assert_eq(nonzero, 0, "%zu bytes not zeroed", nonzero);
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f) {
        if (!fgets(mode, sizeof mode, f)) mode[0] = '\0';
        fclose(f);
    }
    /* with "[madvise]" or "[always]" the advice takes effect (unless the kernel is out of huge pages;
       ASan's allocator maps its own way) */
    int asan = 0;
#ifdef __SANITIZE_ADDRESS__
    asan = 1;
#endif
    if (!asan && (strstr(mode, "[madvise]") || strstr(mode, "[always]")))
        cr_expect_geq(huge_kb_at(p), 2048, "transparent huge pages are %s but the 8 MiB buffer has %ld kB on them",
                      mode, huge_kb_at(p));
    free(p);
    free(q);
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* What a collective does every step: a big temporary buffer allocated,
 * written and freed. Kept memory comes back without page faults. */
Test(bigmem, freed_memory_is_kept_and_reused_without_page_faults)
{
#ifdef __SANITIZE_ADDRESS__
    cr_skip_test("ASan's allocator replaces glibc's malloc, whose policy this sets");
#endif
    bigmem_keep_freed_memory();
    size_t bytes = 64u << 20;
    /* written through a volatile pointer, a byte per page, so the compiler keeps every write */
    volatile unsigned char *p = malloc(bytes);
    cr_assert(p);
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 1;
    free((void *)p);
    long before = minor_faults();
    p = malloc(bytes);
    cr_assert(p);
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 2;
    long faults = minor_faults() - before;
    free((void *)p);
    cr_assert_lt(faults, 64, "a 64 MiB buffer allocated again took %ld page faults (expected none: the memory was "
                 "kept)", faults);
}
