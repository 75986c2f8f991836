/* Lowercasing and canonical decomposition over the generated tables. */
#include "unicode_props.h"

/* Index of cp in a table of rows sorted by their first column, or -1. */
static int unicode_find(const uint32_t (*rows)[2], int n, uint32_t cp)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (rows[mid][0] == cp) return mid;
        if (rows[mid][0] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int unicode_lower_char(uint32_t cp, uint32_t out[2])
{
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    if (cp == 0x130) { /* İ: the one lowercase of two characters (SpecialCasing) */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    int i = unicode_find(unicode_lower, unicode_lower_count, cp);
    out[0] = i < 0 ? cp : unicode_lower[i][1];
    return 1;
}

int unicode_nfd_char(uint32_t cp, uint32_t out[8])
{
    enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, V_COUNT = 21, T_COUNT = 28 };
    if (cp >= S_BASE && cp <= 0xD7A3) { /* Hangul syllable: algorithmic (Unicode §3.12) */
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / (V_COUNT * T_COUNT);
        out[1] = V_BASE + s % (V_COUNT * T_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    int i = cp < 0xC0 ? -1 : unicode_find(unicode_nfd_index, unicode_nfd_count, cp);
    if (i < 0) {
        out[0] = cp;
        return 1;
    }
    uint32_t off = unicode_nfd_index[i][1] >> 3, n = unicode_nfd_index[i][1] & 7;
    for (uint32_t k = 0; k < n; k++) out[k] = unicode_nfd_data[off + k];
    return (int)n;
}
