/* The summaries of a chunk of attention rows in one visit per row (tensorboard_plugin_attention.row_kernel).
 *
 * Called from long_layers._fused_rows after torch's score product: each row of scores is turned into its
 * weights in place while it sits in the core's cache (max with the top-k's block maxima; exp with the sum,
 * the entropy's and the distance's sums; normalise into the pyramid's running sums and maxima; the top-k),
 * where torch's operations would pass over the whole chunk from memory once each. Plain C, no Python or torch headers: compiled on first use
 * with the machine's C compiler (-O3 -march=native and reassociation of float sums, so the loops
 * vectorise; not -ffast-math, whose start-up code would set flush-to-zero for the whole process).
 * The pure-torch tail gives the same values within float32 rounding (tests/test_long.py).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 64  /* keys per block of the top-k's candidate search (row_kernel.BLOCK) */

/* e^x for x <= 0 to ~2 ulp (Cephes' expf: x = n ln 2 + r, a polynomial in r, times 2^n), inline so that the
 * loop around it vectorises. Exactly 0 below CUTOFF: masked keys hold -FLT_MAX, and no weight, once divided
 * by a row's sum (< 2^24 keys), is a denormal, whose arithmetic is slow without flush-to-zero (which this
 * library must not set: it is the whole process's). A weight below e^-64 (1.6e-28) of its row's largest is
 * far below the smallest stored code (~1e-4). */
#define CUTOFF (-64.0f)
static inline float exp_neg(float x) {
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);  /* ln 2 in two parts, so that r keeps its low bits */
    float y = 1.9875691500e-4f;
    y = fmaf(y, r, 1.3981999507e-3f);
    y = fmaf(y, r, 8.3334519073e-3f);
    y = fmaf(y, r, 4.1665795894e-2f);
    y = fmaf(y, r, 1.6666665459e-1f);
    y = fmaf(y, r, 5.0000001201e-1f);
    y = fmaf(y, r * r, r + 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < CUTOFF ? 0.0f : y * scale;
}

/* max(a, b) as one vector instruction (fmaxf's NaN rules keep gcc from vectorising its reductions) */
static inline float max_f(float a, float b) { return a > b ? a : b; }

/* Insert (v, j) into the descending list (vals, idx) of *count <= k entries. */
static void top_insert(float *vals, int32_t *idx, int64_t *count, int64_t k, float v, int32_t j) {
    int64_t at = *count < k ? (*count)++ : k - 1;
    while (at > 0 && vals[at - 1] < v) {
        vals[at] = vals[at - 1];
        idx[at] = idx[at - 1];
        at--;
    }
    vals[at] = v;
    idx[at] = j;
}

/* One head's chunk: `r` rows of `mc` scores (row stride `ld`), overwritten by their weights.
 *
 * lse, entropy: r values each. top_v / top_i: r x k (row stride k), keys as key0 + their place in the chunk.
 * width > 0 and rq > 0: the pyramid is taken here, `width` keys per key bin and `rq` rows per query bin
 * (r a multiple of rq, mc of width); pyr / pyr_max point at the cell (the chunk's first query bin, its first
 * key bin), row stride pyr_ld: pooled weights are added, maxima raised.
 * distance (r values, or NULL): per row, sum_j p_j |i - j|, with key j at place j of the chunk and row i's own
 * key at place diag0 + i (the mean distance metric, summed directly: no cancellation of large moments).
 *
 * Every pass over a row is elementwise (it vectorises whole): the block maxima for the top-k are taken on
 * the scores (the weights are monotone in them) with the row's max; the distance is summed with the exp;
 * the pyramid's cells are summed over a query bin's rows first, in a row of running sums and maxima, and
 * pooled over their keys once per bin, not once per row.
 */

/* The top-k of row x (weights) from its blocks' largest scores bmax; key indices offset by key0. */
static void row_topk(const float *x, int64_t mc, const float *bmax, float *tv, int32_t *ti, int64_t k,
                     int64_t key0) {
    int64_t blocks = (mc + BLOCK - 1) / BLOCK, kk = k < mc ? k : mc, count = 0;
    /* the k largest weights lie in the k blocks with the largest maxima, so only blocks whose maximum
     * reaches the k-th largest block maximum are scanned (with fewer than k blocks, every block) */
    for (int64_t b = 0; b < blocks; b++)
        if (count < kk || bmax[b] > tv[kk - 1]) top_insert(tv, ti, &count, kk, bmax[b], (int32_t)b);
    float bar = count < kk ? -FLT_MAX : tv[kk - 1];
    count = 0;
    for (int64_t b = 0; b < blocks; b++) {
        if (bmax[b] < bar) continue;
        int64_t j0 = b * BLOCK, j1 = j0 + BLOCK < mc ? j0 + BLOCK : mc;
        for (int64_t j = j0; j < j1; j++)
            if (count < kk || x[j] > tv[kk - 1]) top_insert(tv, ti, &count, kk, x[j], (int32_t)j);
    }
    for (int64_t t = 0; t < count; t++) ti[t] += (int32_t)key0;
}

static void head_rows(float *s, int64_t r, int64_t mc, int64_t ld,
                      float *lse, float *entropy, float *top_v, int32_t *top_i, int64_t k,
                      float *pyr, float *pyr_max, int64_t pyr_ld, int64_t width, int64_t rq,
                      float *distance, int64_t diag0, int64_t key0) {
    int pooled = width > 0 && rq > 0;
    int64_t full = mc / BLOCK, blocks = (mc + BLOCK - 1) / BLOCK, group = pooled ? rq : 1;
    /* scratch: each block's largest score, each key's place as a float (distance), the query bin's sums and
     * maxima per key (pyramid) */
    float *scratch = malloc(sizeof(float) * (size_t)(blocks + (distance ? mc : 0) + (pooled ? 2 * mc : 0)));
    if (!scratch) return;  /* (not reached in practice: a few hundred KB) */
    float *bm = scratch, *place = bm + blocks, *bin_sum = place + (distance ? mc : 0);
    float *bin_max = pooled ? bin_sum + mc : NULL;
    for (int64_t j = 0; distance && j < mc; j++) place[j] = (float)j;
    for (int64_t j = 0; pooled && j < 2 * mc; j++) bin_sum[j] = 0.0f;  /* and bin_max */
    for (int64_t i0 = 0; i0 < r; i0 += group) {
        for (int64_t g = 0; g < group; g++) {
            int64_t i = i0 + g;
            float *x = s + i * ld;
            /* the row's max and each block's, on the scores */
            float peak = -FLT_MAX;
            for (int64_t b = 0; b < full; b++) {
                float most = -FLT_MAX;
                for (int64_t j = 0; j < BLOCK; j++) most = max_f(most, x[b * BLOCK + j]);
                bm[b] = most;
                peak = max_f(peak, most);
            }
            if (full < blocks) {
                float most = -FLT_MAX;
                for (int64_t j = full * BLOCK; j < mc; j++) most = max_f(most, x[j]);
                bm[full] = most;
                peak = max_f(peak, most);
            }
            /* masked keys hold the lowest finite score: their weight is 0 and 0 * (score - peak) stays 0 */
            float z = 0.0f, et = 0.0f, de = 0.0f;
            if (distance) {
                float own = (float)(diag0 + i);
                for (int64_t j = 0; j < mc; j++) {
                    float t = x[j] - peak;
                    float e = exp_neg(t);
                    z += e;
                    et += e * t;
                    de += e * fabsf(own - place[j]);
                    x[j] = e;
                }
            } else {
                for (int64_t j = 0; j < mc; j++) {
                    float t = x[j] - peak;
                    float e = exp_neg(t);
                    z += e;
                    et += e * t;
                    x[j] = e;
                }
            }
            float inv = 1.0f / z, logz = logf(z);
            lse[i] = peak + logz;
            entropy[i] = logz - et * inv;  /* -sum p log p = log z - sum p (s - peak) */
            if (distance) distance[i] = de * inv;
            /* the weights, into the query bin's running sums and maxima per key (pyramid) */
            if (pooled) {
                for (int64_t j = 0; j < mc; j++) {
                    float p = x[j] * inv;
                    x[j] = p;
                    bin_sum[j] += p;
                    bin_max[j] = max_f(bin_max[j], p);
                }
            } else {
                for (int64_t j = 0; j < mc; j++) x[j] *= inv;
            }
            row_topk(x, mc, bm, top_v + i * k, top_i + i * k, k, key0);
        }
        if (!pooled) continue;
        /* the bin's keys pooled into its cells */
        float *cell = pyr + (i0 / rq) * pyr_ld, *cell_max = pyr_max + (i0 / rq) * pyr_ld;
        for (int64_t b = 0; b < mc / width; b++) {
            float sum = 0.0f, most = 0.0f;
            for (int64_t j = b * width; j < (b + 1) * width; j++) {
                sum += bin_sum[j];
                most = max_f(most, bin_max[j]);
            }
            cell[b] += sum;
            cell_max[b] = max_f(cell_max[b], most);
        }
        for (int64_t j = 0; j < 2 * mc; j++) bin_sum[j] = 0.0f;  /* and bin_max */
    }
    free(scratch);
}

/* `heads` chunks as head_rows, each pointer advanced by its head stride (in elements). */
void attention_rows(int64_t heads, float *s, int64_t s_hs, int64_t r, int64_t mc, int64_t ld,
                    float *lse, float *entropy, int64_t row_hs, float *top_v, int32_t *top_i, int64_t top_hs,
                    int64_t k, float *pyr, float *pyr_max, int64_t pyr_hs, int64_t pyr_ld,
                    int64_t width, int64_t rq, float *distance, int64_t diag0, int64_t key0) {
    for (int64_t h = 0; h < heads; h++)
        head_rows(s + h * s_hs, r, mc, ld, lse + h * row_hs, entropy + h * row_hs, top_v + h * top_hs,
                  top_i + h * top_hs, k, pyr ? pyr + h * pyr_hs : 0, pyr_max ? pyr_max + h * pyr_hs : 0,
                  pyr_ld, width, rq, distance ? distance + h * row_hs : 0, diag0, key0);
}
