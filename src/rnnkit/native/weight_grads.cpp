// The weight gradients after any cell's BPTT loop (rnnkit/native/lstm.py's weight_grads, used
// by the LSTM and the Elman RNN), in one pass over dpre:
//     dW_ih = Σ_k dpre_kᵀ x_k,   dW_hh = Σ_k dpre_kᵀ h_{k−B},   db = Σ_k dpre_k
// over the K = T·B processing-order rows k (h_{k−B} is row k−B of hidden, h0 for the first B).
// One product dpreᵀ [x | h_prev] (N = I + P columns) on packed panels: the [x | h_prev] rows in
// strips of SW = VECS vectors of columns, dpreᵀ in strips of 4 rows, blocks of KC along k. Row
// sums of dpreᵀ come with its packing.
//
// Buffers (row-major): dpre (K, G); x (K, I); h0 (B, P); hidden (K, P); dw_ih (G, I);
// dw_hh (G, P); db (G,).
//
// Also the library's version, which rnnkit/native/__init__.py checks before any call.

#include "native.h"

namespace {

constexpr int64_t KC = 1024;  // k block: a packed strip is KC × SW values (256 KB, AVX-512 float)
constexpr int64_t MC = 64;   // rows of dpreᵀ (gate units) per task
// Vectors per strip: the tile's 4 × VECS accumulators must fit the registers (native.h). With
// AVX2's 16, 4 × 4 spilled five accumulators to the stack and ran slower than two torch.mm
// calls; 4 × 2 runs faster than they do (docs/benchmarks.md).
constexpr int VECS = RK_TILE_VECS;

template <class T>
__attribute__((noinline))  // inlined (as GCC chose once), its loop ran far slower
void micro_acc(const T* ap, const T* bp, int64_t kc, T* c, int64_t ldc, int rows,
                      int64_t cols, bool add) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    constexpr int SW = VECS * L;
    V acc[4][VECS];
    for (int r = 0; r < 4; ++r)
        for (int v = 0; v < VECS; ++v) acc[r][v] = V{};
    for (int64_t k = 0; k < kc; ++k) {
        V w[VECS];
        for (int v = 0; v < VECS; ++v) {
            w[v] = load<V>(bp + k * SW + v * L);
            RK_IN_REGISTER(w[v]);
        }
        for (int r = 0; r < 4; ++r) {
            const T s = ap[k * 4 + r];
            for (int v = 0; v < VECS; ++v) acc[r][v] += s * w[v];
        }
    }
    for (int r = 0; r < rows; ++r) {
        T* cr = c + r * ldc;
        for (int v = 0; v < VECS; ++v) {
            const int64_t n0 = v * L;
            if (n0 >= cols) break;
            if (n0 + L <= cols) {
                V out = acc[r][v];
                if (add) out += load<V>(cr + n0);
                store(cr + n0, out);
            } else {
                for (int64_t n = n0; n < cols; ++n)
                    cr[n] = (add ? cr[n] : T(0)) + acc[r][v][n - n0];
            }
        }
    }
}

template <class T>
void weight_grads(const T* dpre, int64_t K, int64_t G, const T* x, int64_t I, const T* h0,
                  const T* hidden, int64_t B, int64_t P, T* dw_ih, T* dw_hh, T* db, int threads) {
    constexpr int64_t SW = VECS * Vec<T>::n;  // columns per strip
    // column strips: first those of x (→ dw_ih), then those of h_prev (→ dw_hh)
    const int64_t x_strips = (I + SW - 1) / SW, h_strips = (P + SW - 1) / SW;
    const int64_t strips = x_strips + h_strips, blocks = (G + MC - 1) / MC;
    // the packed strips of 4 dpreᵀ rows lie AS values apart: 64 bytes more than a power of two,
    // so that the 16 strips written side by side fall in different L1 sets
    constexpr int64_t AS = KC * 4 + 64 / int64_t(sizeof(T));
    Buffer<T> bpack(size_t(strips) * KC * SW);
    const int team = std::max(1, threads);
    std::vector<std::unique_ptr<Buffer<T>>> apacks;
    for (int p = 0; p < team; ++p) apacks.emplace_back(new Buffer<T>(size_t(MC / 4) * AS));
    std::fill(db, db + G, T(0));
#pragma omp parallel num_threads(team) if (team > 1)
    {
#ifdef _OPENMP
        T* ap = apacks[omp_get_thread_num()]->p;
#else
        T* ap = apacks[0]->p;
#endif
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = std::min(KC, K - k0);
#pragma omp for schedule(static)
            for (int64_t s = 0; s < strips; ++s) {
                const bool is_x = s < x_strips;
                const int64_t c0 = (is_x ? s : s - x_strips) * SW, width = is_x ? I : P;
                const int64_t n = std::min<int64_t>(SW, width - c0);
                T* dst = bpack.p + s * KC * SW;
                for (int64_t k = 0; k < kc; ++k) {
                    const int64_t row = k0 + k;
                    const T* src = is_x ? x + row * I
                                        : (row < B ? h0 + row * P : hidden + (row - B) * P);
                    std::memcpy(dst + k * SW, src + c0, n * sizeof(T));
                    std::fill(dst + k * SW + n, dst + k * SW + SW, T(0));
                }
            }
#pragma omp for schedule(static)
            for (int64_t blk = 0; blk < blocks; ++blk) {
                const int64_t m0 = blk * MC, m1 = std::min(G, m0 + MC);
                const int64_t row_strips = (m1 - m0 + 3) / 4;
                // dpreᵀ rows m0 … m1 in strips of 4, one dpre row (k) at a time: each row (4 KB
                // from the next) is read once per block, not once per strip (16 times), which
                // is measurably faster. The bias gradient's sums come with it.
                const int64_t mlen = m1 - m0;
                T sums[MC];
                std::fill(sums, sums + mlen, T(0));
                for (int64_t k = 0; k < kc; ++k) {
                    const T* src = dpre + (k0 + k) * G + m0;
                    for (int64_t i = 0; i < mlen; ++i) sums[i] += src[i];
                    int64_t rs = 0;
                    for (; rs * 4 + 4 <= mlen; ++rs)
                        std::memcpy(ap + rs * AS + k * 4, src + rs * 4, 4 * sizeof(T));
                    for (int r = 0; rs * 4 < mlen && r < 4; ++r)  // a last strip of < 4 rows
                        ap[rs * AS + k * 4 + r] = rs * 4 + r < mlen ? src[rs * 4 + r] : T(0);
                }
                for (int64_t i = 0; i < mlen; ++i) db[m0 + i] += sums[i];
                const bool add = k0 > 0;
                for (int64_t s = 0; s < strips; ++s) {
                    const bool is_x = s < x_strips;
                    const int64_t c0 = (is_x ? s : s - x_strips) * SW, width = is_x ? I : P;
                    T* out = is_x ? dw_ih : dw_hh;
                    for (int64_t rs = 0; rs < row_strips; ++rs) {
                        const int64_t m = m0 + rs * 4;
                        micro_acc<T>(ap + rs * AS, bpack.p + s * KC * SW, kc,
                                     out + m * width + c0, width,
                                     int(std::min<int64_t>(4, m1 - m)),
                                     std::min<int64_t>(SW, width - c0), add);
                    }
                }
            }
        }
    }
    if (K == 0) {  // no rows: the gradients are zero
        std::fill(dw_ih, dw_ih + G * I, T(0));
        std::fill(dw_hh, dw_hh + G * P, T(0));
    }
}

}  // namespace

extern "C" {

// The version of the C interface below and in lstm.cpp, gru.cpp and elman.cpp (_ABI in
// rnnkit/native/__init__.py).
int rnnkit_native_version() { return 6; }

// dW_ih, dW_hh and the bias gradient from dpre (see weight_grads). Returns 0, or 1 if out of
// memory.
int rnnkit_weight_grads_f32(const float* dpre, int64_t k, int64_t g, const float* x, int64_t i,
                            const float* h0, const float* hidden, int64_t b, int64_t p,
                            float* dw_ih, float* dw_hh, float* db, int threads) {
    return guarded([&] {
        weight_grads<float>(dpre, k, g, x, i, h0, hidden, b, p, dw_ih, dw_hh, db, threads);
    });
}

int rnnkit_weight_grads_f64(const double* dpre, int64_t k, int64_t g, const double* x,
                            int64_t i, const double* h0, const double* hidden, int64_t b,
                            int64_t p, double* dw_ih, double* dw_hh, double* db, int threads) {
    return guarded([&] {
        weight_grads<double>(dpre, k, g, x, i, h0, hidden, b, p, dw_ih, dw_hh, db, threads);
    });
}

}  // extern "C"
