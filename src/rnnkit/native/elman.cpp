// The Elman RNN's time loop on the CPU: rnnkit/native/elman.py's backend (machinery: native.h).
//
// Same contract as rnnkit/functional/elman.py's reference recurrences, f = tanh or relu.
//
// Forward, per step t (activate):   s_t = f(xp_t + s_{t-1} W_hhᵀ)
// Backward, per step t = T−1 … 0 (elman_backward_point):
//     δ_t = (dout_t + δ_{t+1} W_hh) ⊙ f'(a_t)   (dout_t + dh_n at a row's last step),
//     f' read from s_t: 1 − s² for tanh, [s > 0] for relu
//
// Slices as the LSTM's, but one weight row per hidden unit: forward slices pack
// packed[k, jj] = w_hh[j0 + jj, k], backward slices packed[q, jj] = w_hh[q, j0 + jj], both with
// the columns of whole 4-vector tiles (zero past the slice).
//
// Buffers (processing order, row-major): xp, hidden, dout, dpre (T, B, H); h0, dh_n, dh0
// (B, H); w_hh (H, H); batch_sizes (T,).

#include "native.h"

namespace {

// f on one vector of pre-activations.
template <class U> RK_INLINE U activate(U a, bool relu) {
    return relu ? (a > U{} ? a : U{}) : vtanh(a);
}

// One step of BPTT on one vector of hidden units (U = V) or one unit (U = T) of one row:
// δ = (dout_t + from_next) f'(a), f' from s = f(a).
template <bool RELU, class U, class T>
RK_INLINE void elman_backward_point(const T* s, const T* d_out, const T* from_next, T* delta) {
    const U one = splat<U>(T(1));
    const U state = load<U>(s);
    const U slope = RELU ? (state > U{} ? one : U{}) : one - state * state;  // f'(a)
    store(delta, (load<U>(d_out) + load<U>(from_next)) * slope);
}

// elman_backward_point over one row's nj units: whole vectors, then the last units one at a
// time. f is a template argument so that the loop carries no per-element choice.
template <bool RELU, class T>
RK_INLINE void elman_backward_row(const T* s, const T* d_out, const T* from_next, T* delta,
                                  int64_t nj) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    int64_t jj = 0;
    for (; jj + L <= nj; jj += L)
        elman_backward_point<RELU, V>(s + jj, d_out + jj, from_next + jj, delta + jj);
    for (; jj < nj; ++jj)  // a slice's last units, fewer than L
        elman_backward_point<RELU, T>(s + jj, d_out + jj, from_next + jj, delta + jj);
}

// One forward step for R rows (R ≤ 4) and one tile of 4 vectors of hidden units (n of them
// exist): the product h_{t-1} W_hhᵀ for those units, then s = f(xp + product). h null:
// h_{t-1} = 0, no product.
template <class T, int R>
inline void elman_tile(const T* h, int64_t H, const T* bp, int64_t ldb, const T* x, T* h_out,
                       int64_t n, bool relu, ProductBlock& block) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    constexpr int64_t KB = 1024 / sizeof(T);  // see lstm.cpp's forward_tile
    T* z = block.place<T>(x, h_out, h);
    if (h)
        tile<T, R, 4>(h, H, bp, ldb, H, z, KB, H * ldb);  // ldb: the panel's width
    else
        for (int r = 0; r < R; ++r) std::memset(z + r * KB, 0, 4 * L * sizeof(T));
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < 4 && v * L < n; ++v) {
            const int64_t m = std::min<int64_t>(L, n - v * L);
            const V a = load<V>(z + r * KB + v * L) + load_n<V>(x + r * H + v * L, m);
            store_n(h_out + r * H + v * L, activate(a, relu), m);
        }
}

// The forward loop over t: each thread its slices' hidden units, one barrier per step.
template <class T>
void elman_forward(const T* xp, const T* h0, const T* w_hh, const int64_t* batch_sizes,
                   T* hidden, int64_t steps, int64_t batch, int64_t H, bool relu, int threads) {
    constexpr int W = 4 * Vec<T>::n;
    // whole-tile columns, as the LSTM's backward slices have (and their small buffers)
    auto slices = make_slices<T>(H, std::max(threads, 1), H, true, batch);
    const int count = int(slices.size());
    const bool zero_h0 = all_zero(h0, batch * H);
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team)  // the tiles read whole 4-vector column tiles
            pack_gate_groups(w_hh, H, 1, slices[s], slices[s].cols, RK_PANEL(T));
        ProductBlock pb;  // this thread's
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) break;
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;  // (B, H)
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                for (int64_t c = 0; c < sl.nj; c += W) {
                    const int64_t n = std::min<int64_t>(W, sl.nj - c), j = sl.j0 + c;
                    const T* bp = sl.packed->p + panelled(H, RK_PANEL(T), 0, c);  // units c …
                    for (int64_t b = 0; b < rows; b += RK_ROWS) {
                        const T* x = xp + (t * batch + b) * H + j;
                        const T* hp = t == 0 && zero_h0 ? nullptr : h_prev + b * H;
                        T* ho = hidden + (t * batch + b) * H + j;
                        const int64_t ld = RK_PANEL(T);
                        switch (std::min<int64_t>(RK_ROWS, rows - b)) {
                            case 4: elman_tile<T, 4>(hp, H, bp, ld, x, ho, n, relu, pb); break;
                            case 3: elman_tile<T, 3>(hp, H, bp, ld, x, ho, n, relu, pb); break;
                            case 2: elman_tile<T, 2>(hp, H, bp, ld, x, ho, n, relu, pb); break;
                            default: elman_tile<T, 1>(hp, H, bp, ld, x, ho, n, relu, pb); break;
                        }
                    }
                }
            }
            team_barrier();  // s_t complete before anyone reads it
        }
    });
}

// BPTT over t = T−1 … 0. dh0 null: ∂L/∂h_{-1} is not wanted, and its product is skipped.
template <class T>
void elman_backward(const T* hidden, const T* w_hh, const T* dout, const T* dh_n,
                    const int64_t* batch_sizes, T* dpre, T* dh0, int64_t steps, int64_t batch,
                    int64_t H, bool relu, int threads) {
    auto slices = make_slices<T>(H, std::max(threads, 1), H, true, batch);
    const int count = int(slices.size());
    run_team(count, [&](int p, int team) {
        // packed (H, cols) in panels: W_hh's columns of the slice (pack_columns)
        for (int s = p; s < count; s += team) pack_columns(w_hh, H, H, slices[s]);
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) continue;
            const int64_t next = t + 1 < steps ? batch_sizes[t + 1] : 0;  // rows running at t+1
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                const int64_t j0 = sl.j0, nj = sl.nj, cols = sl.cols;
                T* from_below = sl.scratch->p;  // δ_{t+1} W_hh on this slice, (next, cols)
                if (next > 0)
                    product<T>(dpre + (t + 1) * batch * H, H, next, sl.packed->p, H, cols,
                               from_below, cols);
                for (int64_t b = 0; b < rows; ++b) {
                    const int64_t o = (t * batch + b) * H + j0;
                    // rows that end at step t take their carried error from dh_n
                    const T* from_next = b < next ? from_below + b * cols : dh_n + b * H + j0;
                    if (relu)
                        elman_backward_row<true>(hidden + o, dout + o, from_next, dpre + o, nj);
                    else
                        elman_backward_row<false>(hidden + o, dout + o, from_next, dpre + o, nj);
                }
            }
            team_barrier();  // δ_t complete before anyone reads it
        }
        const int64_t rows = steps > 0 ? batch_sizes[0] : 0;  // every row runs at step 0
        if (!dh0) return;
        for (int s = p; s < count; s += team) {  // ∂L/∂h_{-1} = δ_0 W_hh
            const Slice<T>& sl = slices[s];
            T* from_below = sl.scratch->p;
            if (rows > 0)
                product<T>(dpre, H, rows, sl.packed->p, H, sl.cols, from_below, sl.cols);
            for (int64_t b = 0; b < batch; ++b) {
                const T* src = b < rows ? from_below + b * sl.cols : dh_n + b * H + sl.j0;
                std::memcpy(dh0 + b * H + sl.j0, src, sl.nj * sizeof(T));
            }
        }
    });
}

}  // namespace

// The C entry points (argument names as rnnkit/native/_ffi.py's table). Return 0, or 1 when
// a buffer could not be allocated. relu: 0 for tanh, 1 for relu.
extern "C" {

int rnnkit_elman_forward_f32(const float* xp, const float* h0, const float* w_hh,
                             const int64_t* batch_sizes, float* hidden, int64_t steps,
                             int64_t batch, int64_t hidden_size, int relu, int threads) {
    return guarded([&] {
        elman_forward<float>(xp, h0, w_hh, batch_sizes, hidden, steps, batch, hidden_size,
                             relu != 0, threads);
    });
}

int rnnkit_elman_forward_f64(const double* xp, const double* h0, const double* w_hh,
                             const int64_t* batch_sizes, double* hidden, int64_t steps,
                             int64_t batch, int64_t hidden_size, int relu, int threads) {
    return guarded([&] {
        elman_forward<double>(xp, h0, w_hh, batch_sizes, hidden, steps, batch, hidden_size,
                              relu != 0, threads);
    });
}

// dh0 may be null (∂L/∂h0 not wanted).
int rnnkit_elman_backward_f32(const float* hidden, const float* w_hh, const float* dout,
                              const float* dh_n, const int64_t* batch_sizes, float* dpre,
                              float* dh0, int64_t steps, int64_t batch, int64_t hidden_size,
                              int relu, int threads) {
    return guarded([&] {
        elman_backward<float>(hidden, w_hh, dout, dh_n, batch_sizes, dpre, dh0, steps, batch,
                              hidden_size, relu != 0, threads);
    });
}

int rnnkit_elman_backward_f64(const double* hidden, const double* w_hh, const double* dout,
                              const double* dh_n, const int64_t* batch_sizes, double* dpre,
                              double* dh0, int64_t steps, int64_t batch, int64_t hidden_size,
                              int relu, int threads) {
    return guarded([&] {
        elman_backward<double>(hidden, w_hh, dout, dh_n, batch_sizes, dpre, dh0, steps, batch,
                               hidden_size, relu != 0, threads);
    });
}

}  // extern "C"
