#pragma once
// The instruction sets the weight kernels are written for, and which of them this
// CPU runs. A kernel is compiled in when the including translation unit's target
// has its instructions (-march=native on a machine that has them, as packed_matmul's
// xsimd architectures are); among those, the CPU is asked once at run time.

#include <cstdint>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

// What each level needs from the compiler's target.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define KVDECODE_QUANT_AVX512 1
#if defined(__AVX512VNNI__)
#define KVDECODE_QUANT_AVX512_VNNI 1  // vpdpbusd for the Q8_0 dot; otherwise AVX-512BW maddubs + madd
#if defined(__AVX512VBMI__) && defined(__AVX512VL__)
#define KVDECODE_QUANT_AVX512_VBMI 1  // with VNNI: Q2_K's scaled quants looked up (vpermb), Q3_K's scales unpacked (vpmultishiftqb)
#endif
#endif
#if defined(__GFNI__)
#define KVDECODE_QUANT_AVX512_GFNI 1  // the K-quants' bit fields moved by vgf2p8affineqb
#endif
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__x86_64__) && defined(__linux__)
#define KVDECODE_QUANT_AMX 1  // Q8_0 tiles of several activation rows by tdpbssd (Sapphire Rapids and later)
#endif
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define KVDECODE_QUANT_AVX2 1
#endif
#if defined(__SSE2__)
#define KVDECODE_QUANT_SSE2 1
#endif

#if defined(KVDECODE_QUANT_AMX)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace kvdecode {

enum class kernel_isa {
    scalar,  // plain loops: every target, and the reference the others are tested against
    sse2,    // SSE2 (f16 and bf16 only: converted in integer registers)
    avx2,    // AVX2 + FMA + F16C
    avx512,  // AVX-512 F + BW (+ VNNI where the target has it)
};

constexpr std::string_view to_string(kernel_isa isa) noexcept {
    switch (isa) {
        case kernel_isa::scalar: return "scalar";
        case kernel_isa::sse2: return "sse2";
        case kernel_isa::avx2: return "avx2";
        case kernel_isa::avx512: return "avx512";
    }
    return "unknown";
}

namespace quant::detail {

// The CPU's features as cpuid and the operating system (which registers it saves
// on a context switch, XCR0) report them; read once.
struct cpu_features {
    bool sse2 = false, avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vnni = false;
    bool amx_int8 = false;  // AMX-TILE and AMX-INT8, their state enabled by the OS

    static const cpu_features& get() noexcept {
        static const cpu_features features = detect();
        return features;
    }

private:
    static cpu_features detect() noexcept {
        cpu_features f;
#if defined(__x86_64__) || defined(__i386__)
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) == 0) return f;
        f.sse2 = (d >> 26) & 1;
        const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        f.fma = (c >> 12) & 1;
        f.f16c = (c >> 29) & 1;
        std::uint64_t xcr0 = 0;
        if (osxsave) {
            std::uint32_t lo = 0, hi = 0;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = (std::uint64_t{hi} << 32) | lo;
        }
        const bool os_ymm = (xcr0 & 0x6) == 0x6;           // SSE and AVX state
        const bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;  // opmask, upper ZMM halves, ZMM16-31
        const bool os_tiles = (xcr0 & 0x60000) == 0x60000;    // XTILECFG, XTILEDATA
        if (!(avx && os_ymm)) f.fma = f.f16c = false;
        unsigned max_leaf = __get_cpuid_max(0, nullptr);
        if (max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            f.avx2 = avx && os_ymm && ((b >> 5) & 1);
            f.avx512f = os_zmm && ((b >> 16) & 1);
            f.avx512bw = f.avx512f && ((b >> 30) & 1);
            f.avx512vnni = f.avx512f && ((c >> 11) & 1);
            f.amx_int8 = os_tiles && ((d >> 24) & 1) && ((d >> 25) & 1);
        }
#endif
        return f;
    }
};

// Whether this CPU runs the quantised kernels of one level (as compiled: the
// AVX-512 level needs VNNI only when the target used it).
inline bool cpu_runs(kernel_isa isa) noexcept {
    const cpu_features& f = cpu_features::get();
    switch (isa) {
        case kernel_isa::scalar: return true;
        case kernel_isa::sse2: return f.sse2;
        case kernel_isa::avx2: return f.avx2 && f.fma && f.f16c;
        case kernel_isa::avx512:
#if defined(KVDECODE_QUANT_AVX512_VNNI)
            if (!f.avx512vnni) return false;
#endif
            return f.avx512f && f.avx512bw && f.avx2 && f.fma && f.f16c;
    }
    return false;
}

// Whether the including translation unit compiled the quantised kernels of a level.
constexpr bool compiled_in(kernel_isa isa) noexcept {
    switch (isa) {
        case kernel_isa::scalar: return true;
#if defined(KVDECODE_QUANT_SSE2)
        case kernel_isa::sse2: return true;
#endif
#if defined(KVDECODE_QUANT_AVX2)
        case kernel_isa::avx2: return true;
#endif
#if defined(KVDECODE_QUANT_AVX512)
        case kernel_isa::avx512: return true;
#endif
        default: return false;
    }
}

// Whether the Q8_0 kernels may use AMX tiles: compiled in, the CPU and OS have them, and
// Linux granted this process the tile data state (asked for once, arch_prctl
// ARCH_REQ_XCOMP_PERM; a process must ask before its first tile instruction, or it is
// killed by SIGILL). Without the grant the AVX-512 kernels run as before.
inline bool amx_permitted() noexcept {
#if defined(KVDECODE_QUANT_AMX)
    static const bool permitted = [] {
        constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
        return cpu_features::get().amx_int8 && syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
    }();
    return permitted;
#else
    return false;
#endif
}

}  // namespace quant::detail
}  // namespace kvdecode
