/* cli/: what the commands write for scripts (the JSON string writer) and read
 * from the command line (numeric options). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* cli_json_string of s[0..n) as a NUL-terminated malloc'd string. */
static char *json_of(const char *s, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    cli_json_string(f, s, n);
    fclose(f);
    return text;
}

/* 1 when text[0..n) is valid UTF-8 (checked here independently of the writer). */
static int valid_utf8(const unsigned char *t, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = t[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 2 : (c & 0xF0) == 0xE0 ? 3 :
                   (c & 0xF8) == 0xF0 && c <= 0xF4 ? 4 : 0;
        if (k == 0 || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((t[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

Test(cli_json, escapes_quotes_backslashes_and_control_characters)
{
    char *j = json_of("a\"b\\c\n\x01", 7);
    cr_assert_str_eq(j, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    cJSON *v = cJSON_Parse(j);
    cr_assert(cJSON_IsString(v));
    cr_assert_str_eq(v->valuestring, "a\"b\\c\n\x01");
    cJSON_Delete(v);
    free(j);
}

Test(cli_json, keeps_valid_utf8_and_an_embedded_nul_is_escaped)
{
    char *j = json_of("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14);
    cr_assert_str_eq(j, "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
    free(j);
    j = json_of("a\0b", 3);
    cr_assert_str_eq(j, "\"a\\u0000b\"");
    free(j);
}

Test(cli_json, replaces_each_invalid_byte_by_u_fffd)
{
    /* a lone continuation byte, a truncated 3-byte sequence, an overlong
     * encoding of '/', a surrogate, a byte that never occurs (0xFF) */
    static const char bad[] = "x\x80y\xE2\x82z\xC0\xAF\xED\xA0\x80\xFF";
    char *j = json_of(bad, sizeof bad - 1);
    cr_assert(valid_utf8((const unsigned char *)j, strlen(j)), "not UTF-8: %s", j);
    cr_assert_str_eq(j, "\"x\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                        "\xEF\xBF\xBD\xEF\xBF\xBD\"");
    cJSON *v = cJSON_Parse(j);
    cr_assert(cJSON_IsString(v), "cJSON rejects %s", j);
    cJSON_Delete(v);
    free(j);
}

Test(cli_number, rejects_nan_and_infinity_whatever_the_range)
{
    double v = 0;
    cr_assert_eq(cli_number("generate", "--temperature", "nan", 0, 100, 0, &v), ST_USAGE);
    cr_assert(strstr(st_message(), "generate: --temperature 'nan' is not a number in [0, 100]"), "%s", st_message());
    cr_assert_eq(cli_number("generate", "--top-p", "NAN", 1e-6, 1, 0, &v), ST_USAGE);
    cr_assert_eq(cli_number("generate", "--top-p", "-nan", 1e-6, 1, 0, &v), ST_USAGE);
    cr_assert_eq(cli_number("generate", "--temperature", "inf", 0, 100, 0, &v), ST_USAGE);
    cr_assert_eq(cli_number("generate", "--top-k", "infinity", 0, 1 << 24, 1, &v), ST_USAGE);
    cr_assert_eq(cli_number("generate", "--temperature", "0.7", 0, 100, 0, &v), ST_OK);
    cr_assert_float_eq(v, 0.7, 1e-12);
}
