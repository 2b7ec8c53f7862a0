// The GRU's time loop on the CPU: rnnkit/native/gru.py's backend (machinery: native.h).
//
// Same contract as rnnkit/functional/gru.py's reference recurrences (torch's formulation).
//
// Forward, per step t (gru_point):
//     hn = h_{t-1} W_hnᵀ + b_hn;  r, z = σ(xp_{r,z} + h_{t-1} W_{hr,hz}ᵀ)
//     n = tanh(xp_n + r hn);      h_t = n + z (h_{t-1} − n)
// Backward, per step t = T−1 … 0 (gru_backward_point), carrying z ⊙ ∂L/∂h:
//     dh_t = dout_t + dhh_{t+1} W_hh + z_{t+1} dh_{t+1}   (dout_t + dh_n at a row's last step)
//     dn = dh (1 − z)(1 − n²)   (∂L/∂ n's pre-activation)
//     dhh = (dn hn r (1 − r), dh (h_{t-1} − n) z (1 − z), dn r)   (∂L/∂ h_{t-1} W_hhᵀ + b)
//
// Slices as the LSTM's with three gate rows per unit: forward slices pack
// packed[k, u 3L + g L + l] = w_hh[g H + j0 + u L + l, k] (unit group u's r, z and n side by
// side); backward slices packed[q, jj] = w_hh[q, j0 + jj] for the 3H rows q.
//
// Buffers (processing order, row-major): xp/gates, dhh (T, B, 3H) gate blocks r, z, n;
// hn_lin, hidden, dout, dn_pre (T, B, H); h0, dh_n, dh0 (B, H); w_hh (3H, H); b_hn (H,) or
// null; batch_sizes (T,).

#include "native.h"

namespace {

// One step of the cell on one vector of hidden units of one row.
template <class U> struct GruPoint {
    U r, z, n, hn, h;
};
template <class U>
RK_INLINE GruPoint<U> gru_point(U x_r, U x_z, U x_n, U hh_r, U hh_z, U hn, U h_prev) {
    GruPoint<U> s;
    s.r = vsigmoid(hh_r + x_r);
    s.z = vsigmoid(hh_z + x_z);
    s.hn = hn;                         // W_hn h_{t-1} + b_hn
    s.n = vtanh(x_n + s.r * hn);       // n = tanh(xp_n + r hn)
    s.h = s.n + s.z * (h_prev - s.n);  // h_t = (1 − z) n + z h_{t-1}
    return s;
}

// One step of BPTT on one vector of hidden units (U = V) or one unit (U = T) of one row.
// gate: the row's gates at t (stride H between r, z, n); hn: W_hn h_{t-1} + b_hn; h_prev:
// h_{t-1}; d_out + from_next (+ carry where the row ran at t+1, `below`): ∂L/∂h_t; carry out:
// z ⊙ ∂L/∂h_t; dhh out (stride H) and dn out.
template <class U, class T>
RK_INLINE void gru_backward_point(const T* gate, int64_t H, const T* hn, const T* h_prev,
                                  const T* d_out, const T* from_next, bool below, T* carry,
                                  T* dhh, T* dn_pre) {
    const U one = splat<U>(T(1));
    U dh = load<U>(d_out) + load<U>(from_next);
    if (below) dh += load<U>(carry);  // z_{t+1} ⊙ dh_{t+1}
    const U r = load<U>(gate), z = load<U>(gate + H), n = load<U>(gate + 2 * H);
    const U dn = dh * (one - z) * (one - n * n);  // ∂L/∂(xp_n + r hn)
    const U dhn = dn * r;                         // ∂L/∂hn
    store(dhh, dhn * load<U>(hn) * (one - r));                        // ∂L/∂ r's pre-activation
    store(dhh + H, dh * (load<U>(h_prev) - n) * z * (one - z));       // ∂L/∂ z's pre-activation
    store(dhh + 2 * H, dhn);
    store(dn_pre, dn);
    store(carry, dh * z);  // z_t ⊙ dh_t, for h_{t-1}
}

// One forward step for R rows (R ≤ 4) and one group of L hidden units (n of them exist): the
// product h_{t-1} W_hhᵀ for the r, z and n rows of those units on a 4 × 3-vector register tile
// (4 × 2 and 4 × 1 with AVX2's 16 registers), then gru_point. x: the rows' xp (gates written
// over it), stride 3H. h null: h_{t-1} = 0, no product (h_prev still gives the values).
template <class T, int R>
inline void gru_tile(const T* h, const T* h_prev, int64_t H, const T* bp, int64_t ldb, T* x,
                     const T* b_hn, T* hn_out, T* h_out, int64_t n, ProductBlock& block) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    constexpr int64_t KB = 1024 / sizeof(T);  // see lstm.cpp's forward_tile
    T* z = block.place<T>(x, hn_out, h_out);
    if (h)
        tile<T, R, 3>(h, H, bp, ldb, H, z, KB);
    else
        for (int r = 0; r < R; ++r) std::memset(z + r * KB, 0, 3 * L * sizeof(T));
    const V bias = b_hn ? load_n<V>(b_hn, n) : V{};
    for (int r = 0; r < R; ++r) {
        const T* hh = z + r * KB;  // h_{t-1} W_hhᵀ: (3 gates × L)
        T* xr = x + r * 3 * H;
        const GruPoint<V> s = gru_point<V>(
            load_n<V>(xr, n), load_n<V>(xr + H, n), load_n<V>(xr + 2 * H, n), load<V>(hh),
            load<V>(hh + L), load<V>(hh + 2 * L) + bias, load_n<V>(h_prev + r * H, n));
        store_n(xr, s.r, n);  // the gates replace the pre-activations they came from
        store_n(xr + H, s.z, n);
        store_n(xr + 2 * H, s.n, n);
        store_n(hn_out + r * H, s.hn, n);
        store_n(h_out + r * H, s.h, n);
    }
}

// The forward loop over t: each thread its slices' hidden units, one barrier per step.
template <class T>
void gru_forward(T* xp, const T* h0, const T* w_hh, const T* b_hn, const int64_t* batch_sizes,
                 T* hn_lin, T* hidden, int64_t steps, int64_t batch, int64_t H, int threads) {
    constexpr int L = Vec<T>::n;
    const int64_t H3 = 3 * H;
    // forward slices of the LSTM's kind: 4 gate vectors per unit group, of which 3 are used
    auto slices = make_slices<T>(H, std::max(threads, 1), H, false, batch);
    const int count = int(slices.size());
    const bool zero_h0 = all_zero(h0, batch * H);
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team) pack_gate_groups(w_hh, H, 3, slices[s], 0, 3 * L);
        ProductBlock pb;  // this thread's
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) break;
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;  // (B, H)
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                for (int64_t u = 0; u * L < sl.nj; ++u) {
                    const int64_t j = sl.j0 + u * L, n = std::min<int64_t>(L, sl.nj - u * L);
                    const T* bp = sl.packed->p + panelled(H, 3 * L, 0, u * 3 * L);  // its r, z, n
                    const T* bias = b_hn ? b_hn + j : nullptr;
                    for (int64_t b = 0; b < rows; b += RK_ROWS) {
                        T* x = xp + (t * batch + b) * H3 + j;
                        const T* hv = h_prev + b * H + j;
                        const T* hp = t == 0 && zero_h0 ? nullptr : h_prev + b * H;
                        T* hn = hn_lin + (t * batch + b) * H + j;
                        T* ho = hidden + (t * batch + b) * H + j;
                        const int64_t ld = 3 * L;
                        switch (std::min<int64_t>(RK_ROWS, rows - b)) {
                            case 4:
                                gru_tile<T, 4>(hp, hv, H, bp, ld, x, bias, hn, ho, n, pb);
                                break;
                            case 3:
                                gru_tile<T, 3>(hp, hv, H, bp, ld, x, bias, hn, ho, n, pb);
                                break;
                            case 2:
                                gru_tile<T, 2>(hp, hv, H, bp, ld, x, bias, hn, ho, n, pb);
                                break;
                            default:
                                gru_tile<T, 1>(hp, hv, H, bp, ld, x, bias, hn, ho, n, pb);
                                break;
                        }
                    }
                }
            }
            team_barrier();  // h_t complete before anyone reads it
        }
    });
}

// BPTT over t = T−1 … 0.
template <class T>
void gru_backward(const T* gates, const T* hn_lin, const T* hidden, const T* h0, const T* w_hh,
                  const T* dout, const T* dh_n, const int64_t* batch_sizes, T* dn_pre, T* dhh,
                  T* dh0, int64_t steps, int64_t batch, int64_t H, int threads) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    const int64_t H3 = 3 * H;
    auto slices = make_slices<T>(H, std::max(threads, 1), H3, true, batch);
    const int count = int(slices.size());
    run_team(count, [&](int p, int team) {
        // packed (3H, cols) in panels: W_hh's columns of the slice. (The carry (B, nj), z ⊙ dh,
        // is only read for rows that ran at t + 1: it needs no start.)
        for (int s = p; s < count; s += team) pack_columns(w_hh, H, H3, slices[s]);
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) continue;
            const int64_t next = t + 1 < steps ? batch_sizes[t + 1] : 0;  // rows running at t+1
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;  // (B, H)
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                const int64_t j0 = sl.j0, nj = sl.nj, cols = sl.cols;
                T* from_below = sl.scratch->p;  // dhh_{t+1} W_hh on this slice, (next, cols)
                if (next > 0)
                    product<T>(dhh + (t + 1) * batch * H3, H3, next, sl.packed->p, H3, cols,
                               from_below, cols);
                for (int64_t b = 0; b < rows; ++b) {
                    const T* g = gates + (t * batch + b) * H3 + j0;
                    T* d = dhh + (t * batch + b) * H3 + j0;
                    const int64_t o = (t * batch + b) * H + j0;
                    const T* hp = h_prev + b * H + j0;
                    T* carry = sl.carry->p + b * nj;  // z_{t+1} ⊙ dh_{t+1}, then z_t ⊙ dh_t
                    const bool below = b < next;  // else the row ends at t: dh_n carries in
                    const T* from_next = below ? from_below + b * cols : dh_n + b * H + j0;
                    int64_t jj = 0;
                    for (; jj + L <= nj; jj += L)
                        gru_backward_point<V>(g + jj, H, hn_lin + o + jj, hp + jj, dout + o + jj,
                                              from_next + jj, below, carry + jj, d + jj,
                                              dn_pre + o + jj);
                    for (; jj < nj; ++jj)  // a slice's last units, fewer than L
                        gru_backward_point<T>(g + jj, H, hn_lin + o + jj, hp + jj, dout + o + jj,
                                              from_next + jj, below, carry + jj, d + jj,
                                              dn_pre + o + jj);
                }
            }
            team_barrier();  // dhh_t complete before anyone reads it
        }
        // ∂L/∂h_{-1} = dhh_0 W_hh + z_0 ⊙ dh_0 (every row runs at step 0)
        const int64_t rows = steps > 0 ? batch_sizes[0] : 0;
        for (int s = p; s < count; s += team) {
            const Slice<T>& sl = slices[s];
            T* from_below = sl.scratch->p;
            if (rows > 0)
                product<T>(dhh, H3, rows, sl.packed->p, H3, sl.cols, from_below, sl.cols);
            for (int64_t b = 0; b < batch; ++b)
                for (int64_t jj = 0; jj < sl.nj; ++jj)
                    dh0[b * H + sl.j0 + jj] = b < rows
                        ? from_below[b * sl.cols + jj] + sl.carry->p[b * sl.nj + jj]
                        : dh_n[b * H + sl.j0 + jj];
        }
    });
}

}  // namespace

// The C entry points (argument names as rnnkit/native/_ffi.py's table). Return 0, or 1 when
// a buffer could not be allocated.
extern "C" {

int rnnkit_gru_forward_f32(float* xp, const float* h0, const float* w_hh, const float* b_hn,
                           const int64_t* batch_sizes, float* hn_lin, float* hidden,
                           int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    return guarded([&] {
        gru_forward<float>(xp, h0, w_hh, b_hn, batch_sizes, hn_lin, hidden, steps, batch,
                           hidden_size, threads);
    });
}

int rnnkit_gru_forward_f64(double* xp, const double* h0, const double* w_hh, const double* b_hn,
                           const int64_t* batch_sizes, double* hn_lin, double* hidden,
                           int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    return guarded([&] {
        gru_forward<double>(xp, h0, w_hh, b_hn, batch_sizes, hn_lin, hidden, steps, batch,
                            hidden_size, threads);
    });
}

int rnnkit_gru_backward_f32(const float* gates, const float* hn_lin, const float* hidden,
                            const float* h0, const float* w_hh, const float* dout,
                            const float* dh_n, const int64_t* batch_sizes, float* dn_pre,
                            float* dhh, float* dh0, int64_t steps, int64_t batch,
                            int64_t hidden_size, int threads) {
    return guarded([&] {
        gru_backward<float>(gates, hn_lin, hidden, h0, w_hh, dout, dh_n, batch_sizes, dn_pre,
                            dhh, dh0, steps, batch, hidden_size, threads);
    });
}

int rnnkit_gru_backward_f64(const double* gates, const double* hn_lin, const double* hidden,
                            const double* h0, const double* w_hh, const double* dout,
                            const double* dh_n, const int64_t* batch_sizes, double* dn_pre,
                            double* dhh, double* dh0, int64_t steps, int64_t batch,
                            int64_t hidden_size, int threads) {
    return guarded([&] {
        gru_backward<double>(gates, hn_lin, hidden, h0, w_hh, dout, dh_n, batch_sizes, dn_pre,
                             dhh, dh0, steps, batch, hidden_size, threads);
    });
}

}  // extern "C"
