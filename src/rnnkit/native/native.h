// Shared machinery of the compiled CPU loops (lstm.cpp, gru.cpp, elman.cpp, weight_grads.cpp;
// built together by rnnkit/native/__init__.py): SIMD vectors and their σ/tanh, the scratch-block
// pool, the register-tile product, the thread team, hidden-unit slices and weight packing.
//
// Every loop follows the same plan. One team of threads (OpenMP's, shared with torch) runs the
// whole sequence. Thread p owns a slice of the hidden units and the gate rows of W_hh that feed
// them, packed once per call into its own buffer that stays in that core's cache for every
// step; the only synchronisation is one barrier per step (every thread needs all of h_{t-1}, or
// all of dpre_{t+1} going back). The product, the nonlinearities and the state update of a step
// run on the same slice while it is in registers or L1.
//
// Conventions: processing order (at step t the first batch_sizes[t] rows run), time-major
// row-major buffers; B batch, H hidden units, G = gates·H; L = lanes of one vector.
// Only standard C++17 and GCC/Clang vector extensions: compiled with -march=native on the
// machine that runs it, the vectors become AVX-512, AVX2 or NEON as the CPU has them.

#pragma once
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
// registers or one AVX register). A register tile holds RK_ROWS rows × RK_TILE_VECS vectors of
// accumulators, RK_TILE_VECS weights and one broadcast: 4 × 4 + 4 + 1 of AVX-512's 32
// registers, 4 × 2 + 2 + 1 of AVX2's 16 (NEON: 21 of 32, two per vector); tile() runs a wider
// product in such pieces.
#define RK_ROWS 4
#if defined(__AVX512F__)
#define RK_VBYTES 64
#define RK_TILE_VECS 4
#else
#define RK_VBYTES 32
#define RK_TILE_VECS 2
#endif

// Keeps a loaded vector in a register. Without it GCC folds each load into every FMA that uses
// it (four loads per vector instead of one), and the tile runs well below the FMA rate
// (docs/benchmarks.md). Only where one vector is one register.
#if defined(__AVX512F__) && defined(__GNUC__)
#define RK_IN_REGISTER(x) __asm__("" : "+v"(x))
#elif defined(__AVX__) && defined(__GNUC__)
#define RK_IN_REGISTER(x) __asm__("" : "+x"(x))
#else
#define RK_IN_REGISTER(x) ((void)0)
#endif


// Forces a pointwise function into its loop, so that the one body serving vector and scalar lanes
// compiles as if written out in place.
#define RK_INLINE inline __attribute__((always_inline))

namespace rnnkit {

// Scratch blocks kept from one call to the next: a fresh block of a few hundred KB costs a page
// fault per 4 KB, more than packing the weights into it. One pool for the whole library (an
// inline function's static is one object across the translation units).
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

}  // namespace rnnkit

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

// The same on one value: the pointwise functions below serve vector lanes and the scalar tail
// of a slice with one body, the non-template overloads taking the scalars.
inline float vsigmoid(float x) { return ssigmoid(x); }
inline double vsigmoid(double x) { return ssigmoid(x); }
inline float vtanh(float x) { return stanh(x); }
inline double vtanh(double x) { return stanh(x); }

template <class T> struct Buffer {  // 64-byte aligned scratch from the pool, uninitialised
    explicit Buffer(size_t n) {
        size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
        p = static_cast<T*>(rnnkit::BlockPool::instance().take(bytes ? bytes : 64));
    }
    ~Buffer() { rnnkit::BlockPool::instance().give(p); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    T* p;
};

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// C[r, :width] = Σ_k A[r, k] B[k, :width] for R rows (R ≤ 4) and one tile of C columns,
// width = VECS vectors (VECS ≤ RK_TILE_VECS). A row-major with stride lda, B row-major with
// stride ldb.
template <class T, int R, int VECS>
__attribute__((noinline))  // inlined into a larger loop nest, GCC spills the accumulators
void tile_part(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t k_len, T* c,
               int64_t ldc) {
    static_assert(VECS <= RK_TILE_VECS, "more accumulators than registers");
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

// The same for any VECS: pieces of at most RK_TILE_VECS vectors, each a pass over A and B.
// With 16 registers (AVX2) a 4 × 4 tile spilled accumulators to the stack, where each step then
// waits for a store and a load; two 4 × 2 passes ran faster (docs/benchmarks.md). The next
// piece of B starts `piece` values on: the next columns of the same rows (the default), or, for
// weights packed in panels of RK_TILE_VECS vectors (RK_PANEL), the next panel.
template <class T, int R, int VECS>
inline void tile(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t k_len, T* c,
                 int64_t ldc, int64_t piece = RK_TILE_VECS * Vec<T>::n) {
    constexpr int L = Vec<T>::n;
    constexpr int P = VECS < RK_TILE_VECS ? VECS : RK_TILE_VECS;
    tile_part<T, R, P>(a, lda, b, ldb, k_len, c, ldc);
    if constexpr (VECS > P)
        tile<T, R, VECS - P>(a, lda, b + piece, ldb, k_len, c + P * L, ldc, piece);
}

// The weights a thread packs are stored in panels: its columns in groups of `width`, each
// group's rows × width values contiguous, so that a register tile, which reads a group's columns
// one row after the next, walks through memory in order. (Row-major, the rows lay a power of
// two apart, 1-8 KB, and fell into the same few L1 sets: the tile re-read them from L2.)
// Where column c of row k of a panelled buffer of `rows` rows lies:
inline int64_t panelled(int64_t rows, int64_t width, int64_t k, int64_t c) {
    return (c / width) * rows * width + k * width + c % width;
}

// Weights are packed in panels of RK_PANEL columns (pack_gate_groups, pack_columns): one
// register tile piece's width, so that each pass of a tile reads its panel front to back (the
// GRU's forward: panels of its 3 gates' vectors, read in pieces side by side).
#define RK_PANEL(T) (RK_TILE_VECS * Vec<T>::n)

// C[:rows, :cols] = A[:rows, :k_len] B[:k_len, :cols]; cols a multiple of 4 vectors (C padded
// to it), B packed in panels (pack_columns): panel n0 / RK_PANEL holds B[:k_len, n0 : n0 +
// RK_PANEL], its k_len × RK_PANEL values contiguous.
template <class T>
void product(const T* a, int64_t lda, int64_t rows, const T* b, int64_t k_len, int64_t cols,
             T* c, int64_t ldc) {
    constexpr int W = 4 * Vec<T>::n, PW = RK_PANEL(T);
    const int64_t piece = k_len * PW;  // from one panel to the next
    for (int64_t n0 = 0; n0 < cols; n0 += W) {
        const T* bp = b + panelled(k_len, PW, 0, n0);  // the first panel of these W columns
        int64_t r0 = 0;
        for (; r0 + RK_ROWS <= rows; r0 += RK_ROWS)
            tile<T, RK_ROWS, 4>(a + r0 * lda, lda, bp, PW, k_len, c + r0 * ldc + n0, ldc, piece);
        const T* ar = a + r0 * lda;
        T* cr = c + r0 * ldc + n0;
        switch (rows - r0) {
            case 3: tile<T, 3, 4>(ar, lda, bp, PW, k_len, cr, ldc, piece); break;
            case 2: tile<T, 2, 4>(ar, lda, bp, PW, k_len, cr, ldc, piece); break;
            case 1: tile<T, 1, 4>(ar, lda, bp, PW, k_len, cr, ldc, piece); break;
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
// every store is a whole vector (strided single stores were far slower, docs/benchmarks.md: the
// packed rows are a power of two apart and fought over the same L1 sets).
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
// (g H + unit), in panels of `width` columns (a multiple of L): column (u gates + g) L + l of
// row k is w_hh[g H + j0 + u L + l, k], unit group u's gates side by side, in transposed
// 16 × 16 blocks. Columns from gates · round_up(nj, L) up to `read` (those a tile reads past
// the slice) are zeroed.
template <class T>
void pack_gate_groups(const T* w_hh, int64_t H, int gates, Slice<T>& sl, int64_t read,
                      int64_t width) {
    constexpr int L = Vec<T>::n;
    for (int64_t u = 0; u * L < sl.nj; ++u) {
        const int64_t nl = std::min<int64_t>(L, sl.nj - u * L);
        for (int g = 0; g < gates; ++g)
            for (int64_t kb = 0; kb < H; kb += 16)
                transpose_block<T>(w_hh + (g * H + sl.j0 + u * L) * H + kb, H, nl,
                                   std::min<int64_t>(16, H - kb),
                                   sl.packed->p + panelled(H, width, kb, (u * gates + g) * L),
                                   width);
    }
    for (int64_t c = gates * round_up(sl.nj, L); c < read; ++c)
        for (int64_t k = 0; k < H; ++k) sl.packed->p[panelled(H, width, k, c)] = T(0);
}

// Packs a slice's columns of all `rows` rows of W_hh for a backward loop, in panels of
// RK_PANEL columns (product): column jj of row q is w_hh[q, j0 + jj], zero up to the slice's
// column count.
template <class T> void pack_columns(const T* w_hh, int64_t H, int64_t rows, Slice<T>& sl) {
    constexpr int64_t W = RK_PANEL(T);
    for (int64_t c0 = 0; c0 < sl.cols; c0 += W) {
        const int64_t n = std::max<int64_t>(0, std::min(W, sl.nj - c0));
        for (int64_t q = 0; q < rows; ++q) {
            T* row = sl.packed->p + panelled(rows, W, q, c0);
            std::memcpy(row, w_hh + q * H + sl.j0 + c0, n * sizeof(T));
            std::fill(row + n, row + W, T(0));
        }
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
