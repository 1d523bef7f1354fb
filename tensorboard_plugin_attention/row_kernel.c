/* The summaries of a chunk of attention rows in one visit per row (tensorboard_plugin_attention.row_kernel).
 *
 * Called from long_layers._fused_rows after torch's score product: each row of scores is turned into its
 * weights in place while it sits in the core's cache (max, exp with the sum and the entropy's sum, normalise
 * with the pyramid's pooled and max cells, block maxima with the top-k), where torch's operations would pass
 * over the whole chunk from memory once each. Plain C, no Python or torch headers: compiled on first use
 * with the machine's C compiler (-O3 -march=native and reassociation of float sums, so the loops
 * vectorise; not -ffast-math, whose start-up code would set flush-to-zero for the whole process).
 * The pure-torch tail gives the same values within float32 rounding (tests/test_long.py).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

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
 * lse, entropy: r values each. top_v / top_i: r x k (row stride k), keys relative to the chunk.
 * width > 0 and rq > 0: the pyramid is taken here, `width` keys per key bin and `rq` rows per query bin;
 * pyr / pyr_max point at the cell (the chunk's first query bin, its first key bin), row stride pyr_ld:
 * pooled weights are added, maxima raised. block: keys per block of the top-k's candidate search.
 * moments (r x 4, or NULL): per row, sum p and sum p j over the keys before `left`, then over those from
 * `right` on (j the key's index in the layer: first_key + its place in the chunk).
 */
static void head_rows(float *s, int64_t r, int64_t mc, int64_t ld,
                      float *lse, float *entropy, float *top_v, int32_t *top_i, int64_t k, int64_t block,
                      float *pyr, float *pyr_max, int64_t pyr_ld, int64_t width, int64_t rq,
                      float *moments, int64_t left, int64_t right, int64_t first_key) {
    int pooled = width > 0 && rq > 0;  /* rows are whole query bins (r % rq == 0), keys whole key bins */
    float bmax[mc / (pooled && width < block ? width : block) + 1];  /* each block's largest weight */
    for (int64_t i = 0; i < r; i++) {
        float *x = s + i * ld;
        float peak = -FLT_MAX;
        for (int64_t j = 0; j < mc; j++) peak = max_f(peak, x[j]);
        /* masked keys hold the lowest finite score: their weight is 0 and 0 * (score - peak) stays 0 */
        float z = 0.0f, et = 0.0f;
        for (int64_t j = 0; j < mc; j++) {
            float t = x[j] - peak;
            float e = exp_neg(t);
            z += e;
            et += e * t;
            x[j] = e;
        }
        float inv = 1.0f / z, logz = logf(z);
        lse[i] = peak + logz;
        entropy[i] = logz - et * inv;  /* -sum p log p = log z - sum p (s - peak) */
        /* weights, the pyramid's cells when it is taken here, and each top-k block's largest weight (the
         * blocks are the pyramid's key bins then: their maxima come with it) */
        int64_t span = pooled ? width : block, blocks = (mc + span - 1) / span;
        if (pooled) {
            float *cell = pyr + (i / rq) * pyr_ld, *cell_max = pyr_max + (i / rq) * pyr_ld;
            for (int64_t b = 0; b < blocks; b++) {
                float sum = 0.0f, most = 0.0f;
                for (int64_t j = b * width; j < (b + 1) * width; j++) {
                    float p = x[j] * inv;
                    x[j] = p;
                    sum += p;
                    most = max_f(most, p);
                }
                cell[b] += sum;
                cell_max[b] = max_f(cell_max[b], most);
                bmax[b] = most;
            }
        } else {
            for (int64_t j = 0; j < mc; j++) x[j] *= inv;
            for (int64_t b = 0; b < blocks; b++) {
                int64_t j0 = b * span, j1 = j0 + span < mc ? j0 + span : mc;
                float most = 0.0f;
                for (int64_t j = j0; j < j1; j++) most = max_f(most, x[j]);
                bmax[b] = most;
            }
        }
        if (moments) {  /* sum p and sum p j over the keys left of `left` and from `right` on */
            float l0 = 0.0f, l1 = 0.0f, r0 = 0.0f, r1 = 0.0f;
            for (int64_t j = 0; j < left; j++) {
                l0 += x[j];
                l1 += x[j] * (float)(int32_t)(first_key + j);  /* int32: converts as a vector */
            }
            for (int64_t j = right; j < mc; j++) {
                r0 += x[j];
                r1 += x[j] * (float)(int32_t)(first_key + j);
            }
            float *m = moments + 4 * i;
            m[0] = l0, m[1] = l1, m[2] = r0, m[3] = r1;
        }
        /* top-k: the k largest weights lie in the k blocks with the largest maxima, so only blocks whose
         * maximum reaches the k-th largest block maximum are scanned */
        float *tv = top_v + i * k;
        int32_t *ti = top_i + i * k;
        int64_t kk = k < mc ? k : mc, count = 0;
        for (int64_t b = 0; b < blocks; b++)
            if (count < kk || bmax[b] > tv[kk - 1]) top_insert(tv, ti, &count, kk, bmax[b], (int32_t)b);
        /* the k-th largest block maximum (with fewer than k blocks, every block): no smaller weight is among the k largest */
        float bar = count < kk ? -1.0f : tv[kk - 1];
        count = 0;
        for (int64_t b = 0; b < blocks; b++) {
            if (bmax[b] < bar) continue;
            int64_t j0 = b * span, j1 = j0 + span < mc ? j0 + span : mc;
            for (int64_t j = j0; j < j1; j++)
                if (count < kk || x[j] > tv[kk - 1]) top_insert(tv, ti, &count, kk, x[j], (int32_t)j);
        }
    }
}

/* `heads` chunks as head_rows, each pointer advanced by its head stride (in elements). */
void attention_rows(int64_t heads, float *s, int64_t s_hs, int64_t r, int64_t mc, int64_t ld,
                    float *lse, float *entropy, int64_t row_hs, float *top_v, int32_t *top_i, int64_t top_hs,
                    int64_t k, int64_t block, float *pyr, float *pyr_max, int64_t pyr_hs, int64_t pyr_ld,
                    int64_t width, int64_t rq, float *moments, int64_t mom_hs, int64_t left, int64_t right,
                    int64_t first_key) {
    for (int64_t h = 0; h < heads; h++)
        head_rows(s + h * s_hs, r, mc, ld, lse + h * row_hs, entropy + h * row_hs, top_v + h * top_hs,
                  top_i + h * top_hs, k, block, pyr ? pyr + h * pyr_hs : 0, pyr_max ? pyr_max + h * pyr_hs : 0,
                  pyr_ld, width, rq, moments ? moments + h * mom_hs : 0, left, right, first_key);
}
