// The LSTM time loop on the CPU, compiled on first use (see rnnkit/native/__init__.py).
//
// Same contract as rnnkit/functional/lstm.py's reference recurrences (processing order: at
// step t the first batch_sizes[t] rows run), without a projection. What the compiled loop buys
// over a Python loop of library calls:
//
// - One team of threads (OpenMP's, shared with torch) for the whole sequence. Thread p owns a
//   slice of the hidden units and all four gate rows of W_hh that feed them, packed once per
//   call into its own buffer that stays in that core's cache for every step. The only
//   synchronisation is one barrier per step (every thread needs all of h_{t-1}, or all of
//   dpre_{t+1} going back).
// - The product, the gate nonlinearities and the cell update of a step run on the same slice
//   while it is in registers or L1.
//
// Forward, per step:  z = xp_t + h_{t-1} W_hhᵀ;  i, f, o = σ(z);  g = tanh z;
//                     c_t = f c_{t-1} + i g;  h_t = o tanh c_t
// Backward, per step: dh_t = dout_t + dpre_{t+1} W_hh (or dout_t + dh_n at a row's last step)
//                     dc = dc_{t+1} f_{t+1} + dh o (1 − tanh² c_t)
//                     dpre = (dc g i(1−i), dc c_{t−1} f(1−f), dc i (1−g²), dh tanh c_t o(1−o))
// After the backward loop: dW_ih, dW_hh and the bias gradient in one pass (weight_grads).
// The input projection and ∂L/∂x stay with PyTorch (oneDNN).
//
// The Elman RNN's and the GRU's loops (rnnkit/native/elman.py, gru.py) are built the same way
// from the same pieces. The Elman RNN:
//   forward  s_t = f(xp_t + s_{t-1} W_hhᵀ), f = tanh or relu;
//   backward δ_t = (dout_t + δ_{t+1} W_hh) ⊙ f'(a_t), f' from s_t (1 − s², or [s > 0]).
// The GRU (torch's formulation):
//   forward  hn = h_{t-1} W_hnᵀ + b_hn;  r, z = σ(xp_{r,z} + h_{t-1} W_{hr,hz}ᵀ);
//            n = tanh(xp_n + r hn);  h_t = n + z (h_{t-1} − n);
//   backward dh_t = dout_t + dhh_{t+1} W_hh + z_{t+1} dh_{t+1};  dn = dh (1 − z)(1 − n²);
//            dhh = (dn hn r (1 − r), dh (h_{t-1} − n) z (1 − z), dn r).
//
// Only standard C++17 and GCC/Clang vector extensions: compiled with -march=native on the
// machine that runs it, the vectors become AVX-512, AVX2 or NEON as the CPU has them.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// Vector width: a whole AVX-512 register where the CPU has them, else 32 bytes (two SSE/NEON
// registers or one AVX register); the register tiles below are sized for 32 registers.
#if defined(__AVX512F__)
#define RK_VBYTES 64
#define RK_ROWS 4  // rows per register tile: 4 × 4 accumulators + 4 weights of 32 registers
#else
#define RK_VBYTES 32
#define RK_ROWS 2  // 16 registers (AVX2), or two NEON registers per vector
#endif

// Keeps a loaded vector in a register. Without it GCC folds each load into every FMA that uses
// it (four loads per vector instead of one), and the tile runs at half the FMA rate: measured
// 47-88 against 106-115 GFLOP/s on one Zen 4 core. Only where one vector is one register.
#if defined(__AVX512F__) && defined(__GNUC__)
#define RK_IN_REGISTER(x) __asm__("" : "+v"(x))
#elif defined(__AVX__) && defined(__GNUC__)
#define RK_IN_REGISTER(x) __asm__("" : "+x"(x))
#else
#define RK_IN_REGISTER(x) ((void)0)
#endif

namespace {

template <class T> struct Vec;
template <> struct Vec<float> {
    typedef float type __attribute__((vector_size(RK_VBYTES)));
    typedef int32_t itype __attribute__((vector_size(RK_VBYTES)));
    enum { n = RK_VBYTES / 4 };
};
template <> struct Vec<double> {
    typedef double type __attribute__((vector_size(RK_VBYTES)));
    typedef int64_t itype __attribute__((vector_size(RK_VBYTES)));
    enum { n = RK_VBYTES / 8 };
};

template <class V, class T> inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}
template <class V, class T> inline void store(T* p, const V& v) { std::memcpy(p, &v, sizeof(V)); }
template <class V, class T> inline V splat(T x) { return V{} + x; }

// exp for a vector of floats: Cephes' range reduction and degree-6 polynomial (≈1 ulp on the
// clamped range, which is all σ and tanh need).
inline Vec<float>::type vexp(Vec<float>::type x) {
    typedef Vec<float>::type V;
    typedef Vec<float>::itype VI;
    const V lo = splat<V>(-87.0f), hi = splat<V>(88.0f);
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    const V magic = splat<V>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    V n = (x * 1.44269504088896341f + magic) - magic;
    V r = x - n * 0.693359375f + n * 2.12194440e-4f;
    V p = splat<V>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    V y = p * r * r + r + 1.0f;
    VI e = (__builtin_convertvector(n, VI) + 127) << 23;
    V scale;
    std::memcpy(&scale, &e, sizeof(V));
    return y * scale;
}

// Doubles (the gradient checks): lane by lane with the library's exp.
inline Vec<double>::type vexp(Vec<double>::type x) {
    Vec<double>::type y;
    for (int l = 0; l < Vec<double>::n; ++l) y[l] = std::exp(x[l]);
    return y;
}

// 1 / d. On AVX-512 floats: the 14-bit reciprocal estimate and one Newton step (relative error
// about 2^-28, below float's rounding), which costs less than a division.
template <class V> inline V vrecip(V d) { return 1.0 / d; }
#if defined(__AVX512F__)
inline Vec<float>::type vrecip(Vec<float>::type d) {
    __m512 x, r;
    std::memcpy(&x, &d, sizeof(x));
    r = _mm512_maskz_rcp14_ps(__mmask16(0xFFFF), x);  // (the unmasked form warns in GCC 12)
    Vec<float>::type e;
    std::memcpy(&e, &r, sizeof(e));
    return e * (2.0f - d * e);
}
#endif

template <class V> inline V vsigmoid(V x) { return vrecip(1.0 + vexp(-x)); }
template <class V> inline V vtanh(V x) { return 2.0 * vrecip(1.0 + vexp(-2.0 * x)) - 1.0; }

template <class T> inline T ssigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
template <class T> inline T stanh(T x) { return T(2) / (T(1) + std::exp(T(-2) * x)) - T(1); }

// Scratch blocks kept from one call to the next: a fresh block of a few hundred KB costs a page
// fault per 4 KB (about 0.3 ms for the forward's packed weights at H = 256), more than packing.
class BlockPool {
  public:
    static BlockPool& instance() {
        static BlockPool pool;
        return pool;
    }
    void* take(size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            size_t best = free_.size();
            for (size_t k = 0; k < free_.size(); ++k)
                if (free_[k].first >= bytes && free_[k].first <= 2 * bytes &&
                    (best == free_.size() || free_[k].first < free_[best].first))
                    best = k;
            if (best != free_.size()) {
                void* p = free_[best].second;
                sizes_[p] = free_[best].first;
                free_.erase(free_.begin() + best);
                return p;
            }
        }
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        std::lock_guard<std::mutex> lock(mutex_);
        sizes_[p] = bytes;
        return p;
    }
    void give(void* p) {
        std::lock_guard<std::mutex> lock(mutex_);
        free_.emplace_back(sizes_[p], p);
        sizes_.erase(p);
        if (free_.size() > kKept) {  // drop the smallest
            auto smallest = std::min_element(free_.begin(), free_.end());
            std::free(smallest->second);
            free_.erase(smallest);
        }
    }

  private:
    static constexpr size_t kKept = 24;
    std::mutex mutex_;
    std::vector<std::pair<size_t, void*>> free_;
    std::map<void*, size_t> sizes_;
};

template <class T> struct Buffer {  // 64-byte aligned scratch from the pool, uninitialised
    explicit Buffer(size_t n) {
        size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
        p = static_cast<T*>(BlockPool::instance().take(bytes ? bytes : 64));
    }
    ~Buffer() { BlockPool::instance().give(p); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    T* p;
};

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// C[r, :width] = Σ_k A[r, k] B[k, :width] for R rows (R ≤ 4) and one tile of C columns,
// width = VECS vectors. A row-major with stride lda, B row-major with stride ldb.
template <class T, int R, int VECS>
__attribute__((noinline))  // inlined into a larger loop nest, GCC spills the accumulators
void tile(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t k_len, T* c, int64_t ldc) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    V acc[R][VECS];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < VECS; ++v) acc[r][v] = V{};
    for (int64_t k = 0; k < k_len; ++k) {
        const T* brow = b + k * ldb;
        V w[VECS];
        for (int v = 0; v < VECS; ++v) {
            w[v] = load<V>(brow + v * L);
            RK_IN_REGISTER(w[v]);
        }
        for (int r = 0; r < R; ++r) {
            const T s = a[r * lda + k];
            for (int v = 0; v < VECS; ++v) acc[r][v] += s * w[v];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < VECS; ++v) store(c + r * ldc + v * L, acc[r][v]);
}

// C[:rows, :cols] = A[:rows, :k_len] B[:k_len, :cols]; cols a multiple of 4 vectors (B and C
// padded to it).
template <class T>
void product(const T* a, int64_t lda, int64_t rows, const T* b, int64_t ldb, int64_t k_len,
             int64_t cols, T* c, int64_t ldc) {
    constexpr int W = 4 * Vec<T>::n;
    for (int64_t n0 = 0; n0 < cols; n0 += W) {
        int64_t r0 = 0;
        for (; r0 + RK_ROWS <= rows; r0 += RK_ROWS)
            tile<T, RK_ROWS, 4>(a + r0 * lda, lda, b + n0, ldb, k_len, c + r0 * ldc + n0, ldc);
        const T* ar = a + r0 * lda;
        T* cr = c + r0 * ldc + n0;
        switch (rows - r0) {
            case 3: tile<T, 3, 4>(ar, lda, b + n0, ldb, k_len, cr, ldc); break;
            case 2: tile<T, 2, 4>(ar, lda, b + n0, ldb, k_len, cr, ldc); break;
            case 1: tile<T, 1, 4>(ar, lda, b + n0, ldb, k_len, cr, ldc); break;
            default: break;
        }
    }
}


// Runs body(p, team) on every thread of an OpenMP team of up to `threads`: the same runtime, and
// so the same pool of threads, that torch's own CPU kernels use (a second pool would spin
// against it for the same cores). Without OpenMP it runs body(0, 1).
template <class Body> void run_team(int threads, Body body) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        body(omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    (void)threads;
    body(0, 1);
}

inline void team_barrier() {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

// Per-slice state: hidden units [j0, j0 + nj), that slice's packed weights and, for the
// backward, a product scratch and ∂L/∂c carried back, one row per batch row.
template <class T> struct Slice {
    int64_t j0, nj, cols;
    std::unique_ptr<Buffer<T>> packed, scratch, carry;
};

// Splits H hidden units into up to `threads` vector-aligned slices and allocates their buffers
// (here, before any thread starts, so a failed allocation stops nothing half-way). Forward
// slices pack `packed_rows` × (four gates of each L-unit group) columns; backward slices pack
// `packed_rows` × (their units) and get the per-row scratch and carry.
template <class T>
std::vector<Slice<T>> make_slices(int64_t hidden, int threads, int64_t packed_rows,
                                  bool backward, int64_t batch) {
    constexpr int L = Vec<T>::n;
    const int64_t width = round_up((hidden + threads - 1) / threads, L);
    std::vector<Slice<T>> slices;
    for (int64_t j = 0; j < hidden; j += width) {
        Slice<T> s;
        s.j0 = j;
        s.nj = std::min(width, hidden - j);
        s.cols = backward ? round_up(s.nj, 4 * L) : 4 * round_up(s.nj, L);
        s.packed.reset(new Buffer<T>(size_t(packed_rows) * s.cols));
        if (backward) {
            s.scratch.reset(new Buffer<T>(size_t(batch) * s.cols));
            s.carry.reset(new Buffer<T>(size_t(batch) * s.nj));
        }
        slices.push_back(std::move(s));
    }
    return slices;
}

template <class V, class T> inline V load_n(const T* p, int64_t n) {  // n ≤ lanes; rest 0
    if (n == Vec<T>::n) return load<V>(p);
    V v = V{};
    std::memcpy(&v, p, size_t(n) * sizeof(T));
    return v;
}
template <class V, class T> inline void store_n(T* p, const V& v, int64_t n) {
    if (n == Vec<T>::n) return store(p, v);
    std::memcpy(p, &v, size_t(n) * sizeof(T));
}

// dst[k ldd + l] = src[l lds + k] for a 16 × 16 block: the forward's packing of W_hh. On
// AVX-512 floats a transpose in registers (four rounds of shuffles, 64 in all); elsewhere, and
// for blocks cut short at the edge of the weight, lane by lane through a local tile, so that
// every store is a whole vector (strided single stores ran at a tenth of the speed: the packed
// rows are a power of two apart and fought over the same L1 sets).
// (L lanes: rows ≤ L source rows, zero-filled to L; nk ≤ 16 columns.)
template <class T>
inline void transpose_lanes(const T* src, int64_t lds, int64_t rows, int64_t nk, T* dst,
                            int64_t ldd) {
    constexpr int L = Vec<T>::n;
    T block[16][L];
    for (int64_t l = 0; l < L; ++l)
        for (int64_t k = 0; k < nk; ++k) block[k][l] = l < rows ? src[l * lds + k] : T(0);
    for (int64_t k = 0; k < nk; ++k) std::memcpy(dst + k * ldd, block[k], L * sizeof(T));
}
template <class T>
inline void transpose_block(const T* src, int64_t lds, int64_t rows, int64_t nk, T* dst,
                            int64_t ldd) {
    transpose_lanes(src, lds, rows, nk, dst, ldd);
}
#if defined(__AVX512F__)
template <>
inline void transpose_block<float>(const float* src, int64_t lds, int64_t rows, int64_t nk,
                                   float* dst, int64_t ldd) {
    if (rows != 16 || nk != 16) return transpose_lanes(src, lds, rows, nk, dst, ldd);  // edge
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: (a0 b0 a1 b1), (a2 b2 a3 b3)
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // r[i + j], lane q: column 4q + j of rows i … i + 3
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {  // gather lane q of r[j], r[4 + j], r[8 + j], r[12 + j]
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; ++j) {  // column 4q + j of all sixteen rows
        _mm512_storeu_ps(dst + j * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD));
        _mm512_storeu_ps(dst + (4 + j) * ldd, _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88));
        _mm512_storeu_ps(dst + (12 + j) * ldd, _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD));
    }
}
#endif

// Packs the W_hh rows of a slice's units for a forward loop, `gates` row blocks of H
// (g H + unit): packed[k, u gates L + g L + l] = w_hh[g H + j0 + u L + l, k], unit group u's gates
// side by side, in transposed 16 × 16 blocks. Columns from gates · round_up(nj, L) up to `read`
// (those a tile reads past the slice) are zeroed.
template <class T>
void pack_gate_groups(const T* w_hh, int64_t H, int gates, Slice<T>& sl, int64_t read) {
    constexpr int L = Vec<T>::n;
    for (int64_t u = 0; u * L < sl.nj; ++u) {
        const int64_t nl = std::min<int64_t>(L, sl.nj - u * L);
        for (int g = 0; g < gates; ++g)
            for (int64_t kb = 0; kb < H; kb += 16)
                transpose_block<T>(w_hh + (g * H + sl.j0 + u * L) * H + kb, H, nl,
                                   std::min<int64_t>(16, H - kb),
                                   sl.packed->p + kb * sl.cols + (u * gates + g) * L, sl.cols);
    }
    const int64_t written = gates * round_up(sl.nj, L);
    if (read > written)
        for (int64_t k = 0; k < H; ++k)
            std::fill(sl.packed->p + k * sl.cols + written, sl.packed->p + k * sl.cols + read,
                      T(0));
}

// Packs a slice's columns of all `rows` rows of W_hh for a backward loop:
// packed[q, jj] = w_hh[q, j0 + jj], zero up to the slice's column count.
template <class T> void pack_columns(const T* w_hh, int64_t H, int64_t rows, Slice<T>& sl) {
    for (int64_t q = 0; q < rows; ++q) {
        T* row = sl.packed->p + q * sl.cols;
        std::memcpy(row, w_hh + q * H + sl.j0, sl.nj * sizeof(T));
        std::fill(row + sl.nj, row + sl.cols, T(0));
    }
}

// Whether the initial state is all zeros (the modules' default): the first step then needs no
// product (every row runs at t = 0).
template <class T> bool all_zero(const T* h0, int64_t n) {
    return std::all_of(h0, h0 + n, [](T v) { return v == T(0); });
}

// A 4 KB-aligned block per thread for the forward's product (see forward_tile): row r of a
// tile's result in KB r, its vectors in four 64-byte slots a … a+3 of that KB, a chosen apart
// from the slots (address bits 6-9) of up to three arrays the tile reads or writes.
struct alignas(4096) ProductBlock {
    unsigned char bytes[4096];

    template <class T> T* place(const void* u, const void* v, const void* w) {
        const unsigned taken = (1u << ((reinterpret_cast<uintptr_t>(u) >> 6) & 15)) |
                               (1u << ((reinterpret_cast<uintptr_t>(v) >> 6) & 15)) |
                               (1u << ((reinterpret_cast<uintptr_t>(w) >> 6) & 15));
        unsigned a = 0;  // three slots taken of sixteen leave four free in a row
        while (taken & (15u << a)) ++a;
        return reinterpret_cast<T*>(bytes) + a * (64 / sizeof(T));
    }
};

// One forward step for R rows (R ≤ 4) and one group of L hidden units: the product
// h_{t-1} W_hhᵀ for the four gates of those units on a 4 × 4-vector register tile (the packed
// columns of a group are i, f, g, o, one vector each), then, straight from the registers, the
// gates, c_t and h_t. n: units of the group that exist (L but at the end of a slice). h null:
// h_{t-1} = 0, no product.
template <class T, int R>
inline void forward_tile(const T* h, int64_t H, const T* bp, int64_t ldb, T* x, int64_t H4,
                         const T* c_prev, T* c_out, T* h_out, int64_t n, ProductBlock& block) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    // The product goes through a small block in L1: with the gate arithmetic in the same loop
    // nest, GCC keeps the accumulators on the stack (measured 2.3× slower). Row r of the block
    // lies in KB r of `block`, its four vectors in the 64-byte slots a … a+3 of that KB, with a
    // chosen apart from the slots (address bits 6-9) of x, the cells and h_out. A load whose low
    // 12 address bits match an older store's waits for it ("4K aliasing"), and where H × the
    // element size is a multiple of 1 KB (H = 256 in floats) every row and gate of x, the cells
    // and h_out sits in one slot of each KB. With the block on the stack, where it fell changed
    // the loop's time from one build, or one call, to the next: 4.3 against 5.5 ms at
    // B = 16, H = 256, T = 100 on two Zen 4 cores.
    constexpr int64_t KB = 1024 / sizeof(T);
    T* z0 = block.place<T>(x, c_prev, h_out);
    if (h)
        tile<T, R, 4>(h, H, bp, ldb, H, z0, KB);
    else
        for (int r = 0; r < R; ++r) std::memset(z0 + r * KB, 0, 4 * L * sizeof(T));
    struct {
        T* p;
        const T* operator[](int r) const { return p + r * KB; }
    } z{z0};
    for (int r = 0; r < R; ++r) {
        T* xr = x + r * H4;
        V i = vsigmoid(load<V>(&z[r][0]) + load_n<V>(xr, n));
        V f = vsigmoid(load<V>(&z[r][L]) + load_n<V>(xr + H, n));
        V g = vtanh(load<V>(&z[r][2 * L]) + load_n<V>(xr + 2 * H, n));
        V og = vsigmoid(load<V>(&z[r][3 * L]) + load_n<V>(xr + 3 * H, n));
        V c = f * load_n<V>(c_prev + r * H, n) + i * g;
        store_n(xr, i, n);
        store_n(xr + H, f, n);
        store_n(xr + 2 * H, g, n);
        store_n(xr + 3 * H, og, n);
        store_n(c_out + r * H, c, n);
        store_n(h_out + r * H, og * vtanh(c), n);
    }
}

template <class T>
void forward(T* xp, const T* h0, const T* c0, const T* w_hh, const int64_t* batch_sizes,
             T* hidden, T* cells, int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    constexpr int L = Vec<T>::n;
    const int64_t H = hidden_size, H4 = 4 * hidden_size;
    auto slices = make_slices<T>(H, std::max(threads, 1), H, false, batch);
    const int count = int(slices.size());
    const bool zero_h0 = all_zero(h0, batch * H);
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team) pack_gate_groups(w_hh, H, 4, slices[s], 0);
        ProductBlock pb;  // this thread's
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) break;
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;
            const T* c_prev = t == 0 ? c0 : cells + (t - 1) * batch * H;
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                for (int64_t u = 0; u * L < sl.nj; ++u) {
                    const int64_t j = sl.j0 + u * L, n = std::min<int64_t>(L, sl.nj - u * L);
                    const T* bp = sl.packed->p + u * 4 * L;
                    for (int64_t b = 0; b < rows; b += RK_ROWS) {
                        T* x = xp + (t * batch + b) * H4 + j;
                        const T* hp = t == 0 && zero_h0 ? nullptr : h_prev + b * H;
                        const T* cp = c_prev + b * H + j;
                        T* co = cells + (t * batch + b) * H + j;
                        T* ho = hidden + (t * batch + b) * H + j;
                        const int64_t ld = sl.cols;
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

template <class T>
void backward(const T* gates, const T* cells, const T* c0, const T* w_hh,
              const T* dout, const T* dh_n, const T* dc_n, const int64_t* batch_sizes, T* dpre,
              T* dh0, T* dc0, int64_t steps, int64_t batch, int64_t hidden_size, int threads) {
    // dh0 null: ∂L/∂h_{-1} is not wanted (h0 needs no gradient), and its product is skipped
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    const int64_t H = hidden_size, H4 = 4 * hidden_size;
    auto slices = make_slices<T>(H, std::max(threads, 1), H4, true, batch);
    const int count = int(slices.size());
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team) {
            Slice<T>& sl = slices[s];  // carry = ∂L/∂c
            pack_columns(w_hh, H, H4, sl);
            for (int64_t b = 0; b < batch; ++b)
                std::memcpy(sl.carry->p + b * sl.nj, dc_n + b * H + sl.j0, sl.nj * sizeof(T));
        }
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) continue;
            const int64_t next = t + 1 < steps ? batch_sizes[t + 1] : 0;  // rows running at t+1
            const T* c_prev = t == 0 ? c0 : cells + (t - 1) * batch * H;
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                const int64_t j0 = sl.j0, nj = sl.nj, cols = sl.cols;
                T* from_below = sl.scratch->p;  // dpre_{t+1} W_hh on this slice
                if (next > 0)
                    product<T>(dpre + (t + 1) * batch * H4, H4, next, sl.packed->p, cols, H4,
                               cols, from_below, cols);
                for (int64_t b = 0; b < rows; ++b) {
                    const T* gt = gates + (t * batch + b) * H4 + j0;
                    T* d = dpre + (t * batch + b) * H4 + j0;
                    const int64_t o = (t * batch + b) * H + j0;
                    const T* cp = c_prev + b * H + j0;
                    // rows that end at step t take their carried error from dh_n
                    const T* from_next = b < next ? from_below + b * cols : dh_n + b * H + j0;
                    T* dcr = sl.carry->p + b * nj;
                    int64_t jj = 0;
                    for (; jj + L <= nj; jj += L) {
                        V i = load<V>(gt + jj), f = load<V>(gt + H + jj);
                        V g = load<V>(gt + 2 * H + jj), og = load<V>(gt + 3 * H + jj);
                        V tc = vtanh(load<V>(cells + o + jj));  // cheaper than storing it
                        V dh = load<V>(dout + o + jj) + load<V>(from_next + jj);
                        V dct = load<V>(dcr + jj) + dh * og * (1.0 - tc * tc);
                        store(d + jj, dct * g * i * (1.0 - i));
                        store(d + H + jj, dct * load<V>(cp + jj) * f * (1.0 - f));
                        store(d + 2 * H + jj, dct * i * (1.0 - g * g));
                        store(d + 3 * H + jj, dh * tc * og * (1.0 - og));
                        store(dcr + jj, dct * f);
                    }
                    for (; jj < nj; ++jj) {
                        T i = gt[jj], f = gt[H + jj], g = gt[2 * H + jj], og = gt[3 * H + jj];
                        T tc = stanh(cells[o + jj]);
                        T dh = dout[o + jj] + from_next[jj];
                        T dct = dcr[jj] + dh * og * (T(1) - tc * tc);
                        d[jj] = dct * g * i * (T(1) - i);
                        d[H + jj] = dct * cp[jj] * f * (T(1) - f);
                        d[2 * H + jj] = dct * i * (T(1) - g * g);
                        d[3 * H + jj] = dh * tc * og * (T(1) - og);
                        dcr[jj] = dct * f;
                    }
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
                product<T>(dpre, H4, rows, sl.packed->p, sl.cols, H4, sl.cols, from_below,
                           sl.cols);
            for (int64_t b = 0; b < batch; ++b) {
                const T* src = b < rows ? from_below + b * sl.cols : dh_n + b * H + sl.j0;
                if (dh0) std::memcpy(dh0 + b * H + sl.j0, src, sl.nj * sizeof(T));
                std::memcpy(dc0 + b * H + sl.j0, sl.carry->p + b * sl.nj, sl.nj * sizeof(T));
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The Elman RNN. Slices as the LSTM's, but one weight row per hidden unit: forward slices pack
// packed[k, jj] = w_hh[j0 + jj, k], backward slices packed[q, jj] = w_hh[q, j0 + jj], both with
// the columns of whole 4-vector tiles (zero past the slice).

template <class V> inline V activate(V a, bool relu) {
    return relu ? (a > V{} ? a : V{}) : vtanh(a);
}
template <class V> inline V slope(V s, bool relu) {  // f'(a) from s = f(a)
    return relu ? (s > V{} ? V{} + 1 : V{}) : 1.0 - s * s;
}
template <class T> inline T slope_one(T s, bool relu) {
    return relu ? (s > T(0) ? T(1) : T(0)) : T(1) - s * s;
}

// One forward step for R rows (R ≤ 4) and one tile of 4 vectors of hidden units (n of them
// exist): the product h_{t-1} W_hhᵀ for those units, then s = f(xp + product). h null: h_{t-1} =
// 0, no product.
template <class T, int R>
inline void elman_tile(const T* h, int64_t H, const T* bp, int64_t ldb, const T* x, T* h_out,
                       int64_t n, bool relu, ProductBlock& block) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    constexpr int64_t KB = 1024 / sizeof(T);
    T* z = block.place<T>(x, h_out, h);
    if (h)
        tile<T, R, 4>(h, H, bp, ldb, H, z, KB);
    else
        for (int r = 0; r < R; ++r) std::memset(z + r * KB, 0, 4 * L * sizeof(T));
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < 4 && v * L < n; ++v) {
            const int64_t m = std::min<int64_t>(L, n - v * L);
            const V a = load<V>(z + r * KB + v * L) + load_n<V>(x + r * H + v * L, m);
            store_n(h_out + r * H + v * L, activate(a, relu), m);
        }
}

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
            pack_gate_groups(w_hh, H, 1, slices[s], slices[s].cols);
        ProductBlock pb;  // this thread's
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) break;
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                for (int64_t c = 0; c < sl.nj; c += W) {
                    const int64_t n = std::min<int64_t>(W, sl.nj - c), j = sl.j0 + c;
                    const T* bp = sl.packed->p + c;
                    for (int64_t b = 0; b < rows; b += RK_ROWS) {
                        const T* x = xp + (t * batch + b) * H + j;
                        const T* hp = t == 0 && zero_h0 ? nullptr : h_prev + b * H;
                        T* ho = hidden + (t * batch + b) * H + j;
                        const int64_t ld = sl.cols;
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

// dh0 null: ∂L/∂h_{-1} is not wanted, and its product is skipped.
template <class T>
void elman_backward(const T* hidden, const T* w_hh, const T* dout, const T* dh_n,
                    const int64_t* batch_sizes, T* dpre, T* dh0, int64_t steps, int64_t batch,
                    int64_t H, bool relu, int threads) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    auto slices = make_slices<T>(H, std::max(threads, 1), H, true, batch);
    const int count = int(slices.size());
    run_team(count, [&](int p, int team) {
        for (int s = p; s < count; s += team) pack_columns(w_hh, H, H, slices[s]);
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) continue;
            const int64_t next = t + 1 < steps ? batch_sizes[t + 1] : 0;  // rows running at t+1
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                const int64_t j0 = sl.j0, nj = sl.nj, cols = sl.cols;
                T* from_below = sl.scratch->p;  // δ_{t+1} W_hh on this slice
                if (next > 0)
                    product<T>(dpre + (t + 1) * batch * H, H, next, sl.packed->p, cols, H, cols,
                               from_below, cols);
                for (int64_t b = 0; b < rows; ++b) {
                    const int64_t o = (t * batch + b) * H + j0;
                    // rows that end at step t take their carried error from dh_n
                    const T* from_next = b < next ? from_below + b * cols : dh_n + b * H + j0;
                    int64_t jj = 0;
                    for (; jj + L <= nj; jj += L) {
                        const V dh = load<V>(dout + o + jj) + load<V>(from_next + jj);
                        store(dpre + o + jj, dh * slope(load<V>(hidden + o + jj), relu));
                    }
                    for (; jj < nj; ++jj)
                        dpre[o + jj] =
                            (dout[o + jj] + from_next[jj]) * slope_one(hidden[o + jj], relu);
                }
            }
            team_barrier();  // δ_t complete before anyone reads it
        }
        const int64_t rows = steps > 0 ? batch_sizes[0] : 0;  // every row runs at step 0
        if (!dh0) return;
        for (int s = p; s < count; s += team) {
            const Slice<T>& sl = slices[s];
            T* from_below = sl.scratch->p;
            if (rows > 0)
                product<T>(dpre, H, rows, sl.packed->p, sl.cols, H, sl.cols, from_below, sl.cols);
            for (int64_t b = 0; b < batch; ++b) {
                const T* src = b < rows ? from_below + b * sl.cols : dh_n + b * H + sl.j0;
                std::memcpy(dh0 + b * H + sl.j0, src, sl.nj * sizeof(T));
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The GRU. Slices as the LSTM's with three gate rows per unit: forward slices pack
// packed[k, u 3L + g L + l] = w_hh[g H + j0 + u L + l, k] (unit group u's r, z and n side by
// side); backward slices packed[q, jj] = w_hh[q, j0 + jj] for the 3H rows q.

// One forward step for R rows (R ≤ 4) and one group of L hidden units (n of them exist): the
// product h_{t-1} W_hhᵀ for the r, z and n rows of those units on a 4 × 3-vector register tile,
// then the gates, hn and h_t. x: the rows' xp (gates written over it), stride 3H. h null:
// h_{t-1} = 0, no product (h_prev still gives the values).
template <class T, int R>
inline void gru_tile(const T* h, const T* h_prev, int64_t H, const T* bp, int64_t ldb, T* x,
                     const T* b_hn, T* hn_out, T* h_out, int64_t n, ProductBlock& block) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    constexpr int64_t KB = 1024 / sizeof(T);
    T* z = block.place<T>(x, hn_out, h_out);
    if (h)
        tile<T, R, 3>(h, H, bp, ldb, H, z, KB);
    else
        for (int r = 0; r < R; ++r) std::memset(z + r * KB, 0, 3 * L * sizeof(T));
    const V bias = b_hn ? load_n<V>(b_hn, n) : V{};
    for (int r = 0; r < R; ++r) {
        T* xr = x + r * 3 * H;
        const V rg = vsigmoid(load<V>(z + r * KB) + load_n<V>(xr, n));
        const V zg = vsigmoid(load<V>(z + r * KB + L) + load_n<V>(xr + H, n));
        const V hn = load<V>(z + r * KB + 2 * L) + bias;
        const V ng = vtanh(load_n<V>(xr + 2 * H, n) + rg * hn);
        const V hp = load_n<V>(h_prev + r * H, n);
        store_n(xr, rg, n);
        store_n(xr + H, zg, n);
        store_n(xr + 2 * H, ng, n);
        store_n(hn_out + r * H, hn, n);
        store_n(h_out + r * H, ng + zg * (hp - ng), n);
    }
}

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
        for (int s = p; s < count; s += team) pack_gate_groups(w_hh, H, 3, slices[s], 0);
        ProductBlock pb;  // this thread's
        for (int64_t t = 0; t < steps; ++t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) break;
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                for (int64_t u = 0; u * L < sl.nj; ++u) {
                    const int64_t j = sl.j0 + u * L, n = std::min<int64_t>(L, sl.nj - u * L);
                    const T* bp = sl.packed->p + u * 3 * L;
                    const T* bias = b_hn ? b_hn + j : nullptr;
                    for (int64_t b = 0; b < rows; b += RK_ROWS) {
                        T* x = xp + (t * batch + b) * H3 + j;
                        const T* hv = h_prev + b * H + j;
                        const T* hp = t == 0 && zero_h0 ? nullptr : h_prev + b * H;
                        T* hn = hn_lin + (t * batch + b) * H + j;
                        T* ho = hidden + (t * batch + b) * H + j;
                        const int64_t ld = sl.cols;
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
        // (the carry, z ⊙ dh, is only read for rows that ran at t + 1: it needs no start)
        for (int s = p; s < count; s += team) pack_columns(w_hh, H, H3, slices[s]);
        for (int64_t t = steps - 1; t >= 0; --t) {
            const int64_t rows = batch_sizes[t];
            if (rows == 0) continue;
            const int64_t next = t + 1 < steps ? batch_sizes[t + 1] : 0;  // rows running at t+1
            const T* h_prev = t == 0 ? h0 : hidden + (t - 1) * batch * H;
            for (int s = p; s < count; s += team) {
                const Slice<T>& sl = slices[s];
                const int64_t j0 = sl.j0, nj = sl.nj, cols = sl.cols;
                T* from_below = sl.scratch->p;  // dhh_{t+1} W_hh on this slice
                if (next > 0)
                    product<T>(dhh + (t + 1) * batch * H3, H3, next, sl.packed->p, cols, H3,
                               cols, from_below, cols);
                for (int64_t b = 0; b < rows; ++b) {
                    const T* g = gates + (t * batch + b) * H3 + j0;
                    T* d = dhh + (t * batch + b) * H3 + j0;
                    const int64_t o = (t * batch + b) * H + j0;
                    const T* hp = h_prev + b * H + j0;
                    T* carry = sl.carry->p + b * nj;  // z_{t+1} ⊙ dh_{t+1}, then z_t ⊙ dh_t
                    const bool below = b < next;  // else the row ends at t: dh_n carries in
                    const T* from_next = below ? from_below + b * cols : dh_n + b * H + j0;
                    int64_t jj = 0;
                    for (; jj + L <= nj; jj += L) {
                        V dh = load<V>(dout + o + jj) + load<V>(from_next + jj);
                        if (below) dh += load<V>(carry + jj);
                        const V r = load<V>(g + jj), zg = load<V>(g + H + jj);
                        const V ng = load<V>(g + 2 * H + jj);
                        const V dn = dh * (1.0 - zg) * (1.0 - ng * ng);
                        const V dhn = dn * r;
                        store(d + jj, dhn * load<V>(hn_lin + o + jj) * (1.0 - r));
                        store(d + H + jj, dh * (load<V>(hp + jj) - ng) * zg * (1.0 - zg));
                        store(d + 2 * H + jj, dhn);
                        store(dn_pre + o + jj, dn);
                        store(carry + jj, dh * zg);
                    }
                    for (; jj < nj; ++jj) {
                        T dh = dout[o + jj] + from_next[jj] + (below ? carry[jj] : T(0));
                        const T r = g[jj], zg = g[H + jj], ng = g[2 * H + jj];
                        const T dn = dh * (T(1) - zg) * (T(1) - ng * ng);
                        const T dhn = dn * r;
                        d[jj] = dhn * hn_lin[o + jj] * (T(1) - r);
                        d[H + jj] = dh * (hp[jj] - ng) * zg * (T(1) - zg);
                        d[2 * H + jj] = dhn;
                        dn_pre[o + jj] = dn;
                        carry[jj] = dh * zg;
                    }
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
                product<T>(dhh, H3, rows, sl.packed->p, sl.cols, H3, sl.cols, from_below,
                           sl.cols);
            for (int64_t b = 0; b < batch; ++b)
                for (int64_t jj = 0; jj < sl.nj; ++jj)
                    dh0[b * H + sl.j0 + jj] = b < rows
                        ? from_below[b * sl.cols + jj] + sl.carry->p[b * sl.nj + jj]
                        : dh_n[b * H + sl.j0 + jj];
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The weight gradients after the loop, in one pass over dpre:
//     dW_ih = Σ_k dpre_kᵀ x_k,   dW_hh = Σ_k dpre_kᵀ h_{k−B},   db = Σ_k dpre_k
// over the K = T·B processing-order rows k (h_{k−B} is row k−B of hidden, h0 for the first B).
// One product dpreᵀ [x | h_prev] (N = I + P columns) on packed panels: the [x | h_prev] rows in
// strips of SW = 4 vectors of columns, dpreᵀ in strips of 4 rows, blocks of KC along k. Row sums of dpreᵀ come
// with its packing.

constexpr int64_t KC = 1024;  // k block: a packed strip is KC × SW values (256 KB, AVX-512 float)
constexpr int64_t MC = 64;   // rows of dpreᵀ (gate units) per task

template <class T>
__attribute__((noinline))  // inlined (as GCC chose once), its loop ran 2.4× slower
void micro_acc(const T* ap, const T* bp, int64_t kc, T* c, int64_t ldc, int rows,
                      int64_t cols, bool add) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::n;
    constexpr int VECS = 4, SW = 4 * L;
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
    constexpr int64_t SW = 4 * Vec<T>::n;  // columns per strip
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
                // from the next) is read once per block, not once per strip (16 times): 3-4 % off
                // the weight gradients' time. The bias gradient's sums come with it.
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

// Runs f, turning any C++ exception (an allocation that failed) into status 1 for the caller.
template <class F> int guarded(F f) {
    try {
        f();
    } catch (...) {
        return 1;
    }
    return 0;
}

}  // namespace

extern "C" {

int rnnkit_native_version() { return 6; }

int rnnkit_lstm_forward_f32(float* xp, const float* h0, const float* c0, const float* w_hh,
                            const int64_t* batch_sizes, float* hidden, float* cells,
                            int64_t steps, int64_t batch, int64_t hidden_size,
                            int threads) {
    return guarded([&] {
        forward<float>(xp, h0, c0, w_hh, batch_sizes, hidden, cells, steps, batch, hidden_size,
                       threads);
    });
}

int rnnkit_lstm_forward_f64(double* xp, const double* h0, const double* c0, const double* w_hh,
                            const int64_t* batch_sizes, double* hidden, double* cells,
                            int64_t steps, int64_t batch,
                            int64_t hidden_size, int threads) {
    return guarded([&] {
        forward<double>(xp, h0, c0, w_hh, batch_sizes, hidden, cells, steps, batch, hidden_size,
                        threads);
    });
}

int rnnkit_lstm_backward_f32(const float* gates, const float* cells,
                             const float* c0, const float* w_hh, const float* dout,
                             const float* dh_n, const float* dc_n, const int64_t* batch_sizes,
                             float* dpre, float* dh0, float* dc0, int64_t steps, int64_t batch,
                             int64_t hidden_size, int threads) {
    return guarded([&] {
        backward<float>(gates, cells, c0, w_hh, dout, dh_n, dc_n, batch_sizes, dpre,
                        dh0, dc0, steps, batch, hidden_size, threads);
    });
}

int rnnkit_lstm_backward_f64(const double* gates, const double* cells,
                             const double* c0, const double* w_hh, const double* dout,
                             const double* dh_n, const double* dc_n, const int64_t* batch_sizes,
                             double* dpre, double* dh0, double* dc0, int64_t steps, int64_t batch,
                             int64_t hidden_size, int threads) {
    return guarded([&] {
        backward<double>(gates, cells, c0, w_hh, dout, dh_n, dc_n, batch_sizes, dpre,
                         dh0, dc0, steps, batch, hidden_size, threads);
    });
}

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
