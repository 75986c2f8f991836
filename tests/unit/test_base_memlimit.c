/* base/memlimit: the limit readers on fake /proc and /sys/fs/cgroup trees. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/memlimit.h"

static char root[64];

static void make_root(void)
{
    snprintf(root, sizeof root, "/tmp/mpilm-memlimit-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void remove_root(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

/* Writes ROOT/rel (making its directories) with text. */
static void put(const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    cr_assert_eq(fileio_make_dirs(dir, 0755), ST_OK);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

TestSuite(memlimit, .init = make_root, .fini = remove_root);

Test(memlimit, parse_takes_numbers_and_reads_max_and_v1_unlimited_as_none)
{
    uint64_t b = 7;
    cr_assert(memlimit_parse("1073741824\n", &b));
    cr_assert_eq(b, 1073741824ull);
    cr_assert(memlimit_parse("0", &b));
    cr_assert_eq(b, 0);
    b = 7;
    cr_assert_not(memlimit_parse("max\n", &b));
    cr_assert_not(memlimit_parse("9223372036854771712\n", &b)); /* v1 "unlimited" */
    cr_assert_not(memlimit_parse("", &b));
    cr_assert_not(memlimit_parse("12abc", &b));
    cr_assert_not(memlimit_parse("-5", &b));
    cr_assert_eq(b, 7, "a refused text leaves the value alone");
}

Test(memlimit, v2_own_max_is_unlimited_but_a_parent_limits)
{
    put("proc/self/cgroup", "0::/job.slice/step_0\n");
    put("sys/fs/cgroup/job.slice/step_0/memory.max", "max\n");
    put("sys/fs/cgroup/job.slice/memory.max", "2147483648\n");
    mem_limit l;
    cr_assert(memlimit_cgroup(root, &l));
    cr_assert_eq(l.bytes, 2147483648ull);
    cr_assert(strstr(l.source, "/sys/fs/cgroup/job.slice/memory.max = 2147483648"), "source: %s", l.source);
}

Test(memlimit, v2_nested_limits_give_the_smallest)
{
    put("proc/self/cgroup", "0::/a/b/c\n");
    put("sys/fs/cgroup/a/b/c/memory.max", "3000000000\n");
    put("sys/fs/cgroup/a/b/memory.max", "1000000000\n");
    put("sys/fs/cgroup/a/memory.max", "2000000000\n");
    mem_limit l;
    cr_assert(memlimit_cgroup(root, &l));
    cr_assert_eq(l.bytes, 1000000000ull);
    cr_assert(strstr(l.source, "/a/b/memory.max"), "source: %s", l.source);
}

Test(memlimit, v2_without_any_limit_is_none)
{
    put("proc/self/cgroup", "0::/user.slice\n");
    put("sys/fs/cgroup/user.slice/memory.max", "max\n");
    mem_limit l;
    cr_assert_not(memlimit_cgroup(root, &l));
}

Test(memlimit, v1_memory_hierarchy_is_read_even_in_a_hybrid_setup)
{
    put("proc/self/cgroup", "4:cpuacct,memory:/slurm/uid_0/job_7\n1:cpu:/\n0::/\n");
    put("sys/fs/cgroup/memory/slurm/uid_0/job_7/memory.limit_in_bytes", "536870912\n");
    put("sys/fs/cgroup/memory/slurm/memory.limit_in_bytes", "9223372036854771712\n");
    put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    mem_limit l;
    cr_assert(memlimit_cgroup(root, &l));
    cr_assert_eq(l.bytes, 536870912ull);
    cr_assert(strstr(l.source, "job_7/memory.limit_in_bytes = 536870912"), "source: %s", l.source);
}

Test(memlimit, missing_files_mean_no_limit)
{
    mem_limit l;
    cr_assert_not(memlimit_cgroup(root, &l), "no proc/self/cgroup");
    cr_assert_not(memlimit_available(root, &l), "no proc/meminfo");
    cr_assert_eq(memlimit_virtual_size(root), 0);
    put("proc/self/cgroup", "0::/gone\n");
    cr_assert_not(memlimit_cgroup(root, &l), "a cgroup whose directory is missing");
    put("proc/self/cgroup", "garbage without colons\n");
    cr_assert_not(memlimit_cgroup(root, &l));
}

Test(memlimit, meminfo_available_and_status_vmsize)
{
    put("proc/meminfo", "MemTotal:       8000000 kB\nMemFree:         100 kB\nMemAvailable:    2048 kB\n");
    put("proc/self/status", "Name:\tmpilm\nVmPeak:\t  999 kB\nVmSize:\t  512 kB\n");
    mem_limit l;
    cr_assert(memlimit_available(root, &l));
    cr_assert_eq(l.bytes, 2048ull * 1024);
    cr_assert(strstr(l.source, "MemAvailable"), "source: %s", l.source);
    cr_assert_eq(memlimit_virtual_size(root), 512ull * 1024);
    put("proc/meminfo", "MemTotal:       8000000 kB\n");
    cr_assert_not(memlimit_available(root, &l), "an old kernel without MemAvailable");
}
