// The LSTM's time loop on the CPU: rnnkit/native/lstm.py's backend (machinery: native.h).
//
// Same contract as rnnkit/functional/lstm.py's reference recurrences, without a projection.
//
// Forward, per step t (lstm_point):
//     z = xp_t + h_{t-1} W_hhᵀ;  i, f, o = σ(z_i, z_f, z_o);  g = tanh z_g
//     c_t = f c_{t-1} + i g;      h_t = o tanh c_t
// Backward, per step t = T−1 … 0 (lstm_backward_point), carrying ∂L/∂c:
//     dh_t = dout_t + dpre_{t+1} W_hh   (dout_t + dh_n at a row's last step)
//     dc_t = dc_{t+1} f_{t+1} + dh_t o (1 − tanh² c_t)
//     dpre = (dc g i(1−i), dc c_{t−1} f(1−f), dc i (1−g²), dh tanh c_t o(1−o))
// After the loop: dW_ih, dW_hh and the bias gradient in one pass (weight_grads.cpp); the input
// projection and ∂L/∂x stay with PyTorch.
//
// Buffers (processing order, row-major): xp/gates (T, B, 4H) gate blocks i, f, g, o;
// h0, c0, dh_n, dc_n, dh0, dc0 (B, H); w_hh (4H, H); hidden, cells, dout (T, B, H);
// dpre (T, B, 4H); batch_sizes (T,).

#include "native.h"

namespace {

// One step of the cell on one vector of hidden units of one row: the gates from their
// pre-activations z, then c_t and h_t.
template <class U> struct LstmPoint {
    U i, f, g, o, c, h;
};
template <class U> RK_INLINE LstmPoint<U> lstm_point(U z_i, U z_f, U z_g, U z_o, U c_prev) {
    LstmPoint<U> s;
    s.i = vsigmoid(z_i);
    s.f = vsigmoid(z_f);
    s.g = vtanh(z_g);
    s.o = vsigmoid(z_o);
    s.c = s.f * c_prev + s.i * s.g;  // c_t = f c_{t-1} + i g
    s.h = s.o * vtanh(s.c);          // h_t = o tanh c_t
    return s;
}

// One step of BPTT on one vector of hidden units (U = V) or one unit (U = T) of one row.
// gate: the row's gates at t (stride H between i, f, g, o); cell: c_t; c_prev: c_{t−1};
// d_out + from_next: ∂L/∂h_t's two parts; dc: ∂L/∂c_{t+1} in, ∂L/∂c_t f out (for c_{t−1});
// dpre: ∂L/∂z out (stride H).
template <class U, class T>
RK_INLINE void lstm_backward_point(const T* gate, int64_t H, const T* cell, const T* c_prev,
                                   const T* d_out, const T* from_next, T* dc, T* dpre) {
    const U one = splat<U>(T(1));
    const U i = load<U>(gate), f = load<U>(gate + H);
    const U g = load<U>(gate + 2 * H), o = load<U>(gate + 3 * H);
    const U tanh_c = vtanh(load<U>(cell));  // recomputed: cheaper than storing it
    const U dh = load<U>(d_out) + load<U>(from_next);
    const U dc_t = load<U>(dc) + dh * o * (one - tanh_c * tanh_c);
    store(dpre, dc_t * g * i * (one - i));                    // ∂L/∂z_i = dc g σ'(i)
    store(dpre + H, dc_t * load<U>(c_prev) * f * (one - f));  // ∂L/∂z_f = dc c_{t−1} σ'(f)
    store(dpre + 2 * H, dc_t * i * (one - g * g));            // ∂L/∂z_g = dc i tanh'(g)
    store(dpre + 3 * H, dh * tanh_c * o * (one - o));         // ∂L/∂z_o = dh tanh c_t σ'(o)
    store(dc, dc_t * f);                                      // on to c_{t−1}
}

// One forward step for R rows (R ≤ 4) and one group of L hidden units: the product
// h_{t-1} W_hhᵀ for the four gates of those units on a 4 × 4-vector register tile (two 4 × 2
// passes with AVX2's 16 registers; the packed columns of a group are i, f, g, o, one vector
// each, in panels: native.h), then lstm_point. n: units of the group that exist (L but at the
// end of a slice). h null: h_{t-1} = 0, no product.
template <class T, int R>
inline void forward_tile(const T* h, int64_t H, const T* bp, int64_t ldb, T* x, int64_t H4,
                         const T* c_prev, T* c_out, T* h_out, int64_t n, ProductBlock& block) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    // The product goes through a small block in L1: with the gate arithmetic in the same loop
    // nest, GCC keeps the accumulators on the stack (much slower). Row r of the block lies in
    // KB r of `block`, its four vectors in the 64-byte slots a … a+3 of that KB, with a chosen
    // apart from the slots (address bits 6-9) of x, the cells and h_out. A load whose low 12
    // address bits match an older store's waits for it ("4K aliasing"), and where H × the
    // element size is a multiple of 1 KB (H = 256 in floats) every row and gate of x, the cells
    // and h_out sits in one slot of each KB. With the block on the stack, where it fell changed
    // the loop's time from one build, or one call, to the next (docs/benchmarks.md).
    constexpr int64_t KB = 1024 / sizeof(T);
    T* z0 = block.place<T>(x, c_prev, h_out);
    if (h)
        tile<T, R, 4>(h, H, bp, ldb, H, z0, KB, H * ldb);  // ldb: the panel's width
    else
        for (int r = 0; r < R; ++r) std::memset(z0 + r * KB, 0, 4 * L * sizeof(T));
    for (int r = 0; r < R; ++r) {
        const T* z = z0 + r * KB;  // (4 gates × L)
        T* xr = x + r * H4;
        const LstmPoint<V> s = lstm_point<V>(
            load<V>(z) + load_n<V>(xr, n), load<V>(z + L) + load_n<V>(xr + H, n),
            load<V>(z + 2 * L) + load_n<V>(xr + 2 * H, n),
            load<V>(z + 3 * L) + load_n<V>(xr + 3 * H, n), load_n<V>(c_prev + r * H, n));
        store_n(xr, s.i, n);  // the gates replace the pre-activations they came from
        store_n(xr + H, s.f, n);
        store_n(xr + 2 * H, s.g, n);
        store_n(xr + 3 * H, s.o, n);
        store_n(c_out + r * H, s.c, n);
        store_n(h_out + r * H, s.h, n);
    }
}

// The forward loop over t: each thread its slices' hidden units, one barrier per step.
template <class T>
void forward(T* xp, const T* h0, const T* c0, const T* w_hh, const int64_t* batch_sizes,
             T* hidden, T* cells, int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    constexpr int L = Vec<T>::n;
    const int64_t H = hidden_size, H4 = 4 * hidden_size;
    auto slices = make_slices<T>(H, std::max(threads, 1), H, false, batch);
    const int count = int(slices.size());
    const bool zero_h0 = all_zero(h0, batch * H);
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team)
            pack_gate_groups(w_hh, H, 4, slices[s], 0, RK_PANEL(T));
        ProductBlock pb;  // this thread's
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) break;
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;  // (B, H)
            const T* c_prev = t == 0 ? c0 : cells + (t - 1) * batch * H;   // (B, H)
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                for (int64_t u = 0; u * L < sl.nj; ++u) {
                    const int64_t j = sl.j0 + u * L, n = std::min<int64_t>(L, sl.nj - u * L);
                    const T* bp = sl.packed->p + panelled(H, RK_PANEL(T), 0, u * 4 * L);
                    for (int64_t b = 0; b < rows; b += RK_ROWS) {
                        T* x = xp + (t * batch + b) * H4 + j;
                        const T* hp = t == 0 && zero_h0 ? nullptr : h_prev + b * H;
                        const T* cp = c_prev + b * H + j;
                        T* co = cells + (t * batch + b) * H + j;
                        T* ho = hidden + (t * batch + b) * H + j;
                        const int64_t ld = RK_PANEL(T);
                        switch (std::min<int64_t>(RK_ROWS, rows - b)) {
                            case 4:
                                forward_tile<T, 4>(hp, H, bp, ld, x, H4, cp, co, ho, n, pb);
                                break;
                            case 3:
                                forward_tile<T, 3>(hp, H, bp, ld, x, H4, cp, co, ho, n, pb);
                                break;
                            case 2:
                                forward_tile<T, 2>(hp, H, bp, ld, x, H4, cp, co, ho, n, pb);
                                break;
                            default:
                                forward_tile<T, 1>(hp, H, bp, ld, x, H4, cp, co, ho, n, pb);
                                break;
                        }
                    }
                }
            }
            team_barrier();  // h_t complete before anyone reads it
        }
    });
}

// BPTT over t = T−1 … 0. dh0 null: ∂L/∂h_{-1} is not wanted (h0 needs no gradient), and its
// product is skipped.
template <class T>
void backward(const T* gates, const T* cells, const T* c0, const T* w_hh,
              const T* dout, const T* dh_n, const T* dc_n, const int64_t* batch_sizes, T* dpre,
              T* dh0, T* dc0, int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    const int64_t H = hidden_size, H4 = 4 * hidden_size;
    auto slices = make_slices<T>(H, std::max(threads, 1), H4, true, batch);
    const int count = int(slices.size());
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team) {
            Slice<T>& sl = slices[s];  // packed (4H, cols), panels: W_hh's slice columns
            pack_columns(w_hh, H, H4, sl);
            for (int64_t b = 0; b < batch; ++b)  // carry (B, nj): ∂L/∂c, from dc_n
                std::memcpy(sl.carry->p + b * sl.nj, dc_n + b * H + sl.j0, sl.nj * sizeof(T));
        }
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) continue;
            const int64_t next = t + 1 < steps ? batch_sizes[t + 1] : 0;  // rows running at t+1
            const T* c_prev = t == 0 ? c0 : cells + (t - 1) * batch * H;  // (B, H)
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                const int64_t j0 = sl.j0, nj = sl.nj, cols = sl.cols;
                // ∂L/∂h_t's part from step t+1: dpre_{t+1} W_hh on this slice, (next, cols)
                T* from_below = sl.scratch->p;
                if (next > 0)
                    product<T>(dpre + (t + 1) * batch * H4, H4, next, sl.packed->p, H4,
                               cols, from_below, cols);
                for (int64_t b = 0; b < rows; ++b) {
                    const T* gt = gates + (t * batch + b) * H4 + j0;
                    T* d = dpre + (t * batch + b) * H4 + j0;
                    const int64_t o = (t * batch + b) * H + j0;
                    const T* cp = c_prev + b * H + j0;
                    // rows that end at step t take their carried error from dh_n
                    const T* from_next = b < next ? from_below + b * cols : dh_n + b * H + j0;
                    T* dc = sl.carry->p + b * nj;
                    int64_t jj = 0;
                    for (; jj + L <= nj; jj += L)
                        lstm_backward_point<V>(gt + jj, H, cells + o + jj, cp + jj,
                                               dout + o + jj, from_next + jj, dc + jj, d + jj);
                    for (; jj < nj; ++jj)  // a slice's last units, fewer than L
                        lstm_backward_point<T>(gt + jj, H, cells + o + jj, cp + jj,
                                               dout + o + jj, from_next + jj, dc + jj, d + jj);
                }
            }
            team_barrier();  // dpre_t complete before anyone reads it
        }
        // ∂L/∂h_{-1} = dpre_0 W_hh (every row runs at step 0); ∂L/∂c_{-1} is the carried dc
        const int64_t rows = steps > 0 ? batch_sizes[0] : 0;
        for (int s = p; s < count; s += team) {
            const Slice<T>& sl = slices[s];
            T* from_below = sl.scratch->p;
            if (rows > 0 && dh0)
                product<T>(dpre, H4, rows, sl.packed->p, H4, sl.cols, from_below,
                           sl.cols);
            for (int64_t b = 0; b < batch; ++b) {
                const T* src = b < rows ? from_below + b * sl.cols : dh_n + b * H + sl.j0;
                if (dh0) std::memcpy(dh0 + b * H + sl.j0, src, sl.nj * sizeof(T));
                std::memcpy(dc0 + b * H + sl.j0, sl.carry->p + b * sl.nj, sl.nj * sizeof(T));
            }
        }
    });
}

}  // namespace

// The C entry points (argument names as rnnkit/native/_ffi.py's table). Return 0, or 1 when
// a buffer could not be allocated.
extern "C" {

int rnnkit_lstm_forward_f32(float* xp, const float* h0, const float* c0, const float* w_hh,
                            const int64_t* batch_sizes, float* hidden, float* cells,
                            int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    return guarded([&] {
        forward<float>(xp, h0, c0, w_hh, batch_sizes, hidden, cells, steps, batch, hidden_size,
                       threads);
    });
}

int rnnkit_lstm_forward_f64(double* xp, const double* h0, const double* c0, const double* w_hh,
                            const int64_t* batch_sizes, double* hidden, double* cells,
                            int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    return guarded([&] {
        forward<double>(xp, h0, c0, w_hh, batch_sizes, hidden, cells, steps, batch, hidden_size,
                        threads);
    });
}

int rnnkit_lstm_backward_f32(const float* gates, const float* cells, const float* c0,
                             const float* w_hh, const float* dout, const float* dh_n,
                             const float* dc_n, const int64_t* batch_sizes, float* dpre,
                             float* dh0, float* dc0, int64_t steps, int64_t batch,
                             int64_t hidden_size, int threads) {
    return guarded([&] {
        backward<float>(gates, cells, c0, w_hh, dout, dh_n, dc_n, batch_sizes, dpre, dh0, dc0,
                        steps, batch, hidden_size, threads);
    });
}

int rnnkit_lstm_backward_f64(const double* gates, const double* cells, const double* c0,
                             const double* w_hh, const double* dout, const double* dh_n,
                             const double* dc_n, const int64_t* batch_sizes, double* dpre,
                             double* dh0, double* dc0, int64_t steps, int64_t batch,
                             int64_t hidden_size, int threads) {
    return guarded([&] {
        backward<double>(gates, cells, c0, w_hh, dout, dh_n, dc_n, batch_sizes, dpre, dh0, dc0,
                         steps, batch, hidden_size, threads);
    });
}

}  // extern "C"
