// pd_emu.h - runs ponder's CUDA kernel sources on the CPU (header-only C++17).
//
// The kernel files in kernels/ compile with nvcc for the GPU and, through this header,
// with g++ for the CPU: the same source, so tests on machines without a GPU exercise the
// kernels' indexing, shared memory, barriers, warp operations, atomics, reductions and
// tie-breaks against the CPU engine. It also provides the subset of the CUDA runtime API
// that kernels/runtime.cu uses (memory, streams, events, graphs), so the kernel library's
// C ABI (pd_cuda.h) is the same in both builds.
//
// DESIGN
// Threads.  Every CUDA thread is a fiber with its own stack (256 KiB reserved, a PROT_NONE
//   guard page below it; only touched pages cost memory). A block's fibers run on one OS
//   thread; blocks are dealt to a small pool of OS threads (PD_EMU_THREADS, default
//   min(4, cores)), so atomics between blocks are real atomics. Switching is a hand-written
//   register swap on x86-64 (about 15x cheaper than swapcontext, which makes a system
//   call) and ucontext elsewhere.
// Synchronisation.  __syncthreads releases when every live thread of the block waits at
//   the same barrier. Warp operations (__shfl*_sync, __ballot_sync, __any/__all_sync,
//   __syncwarp) release when every lane named in the mask waits at the same operation
//   with the same mask; 32 lanes, CUDA's width semantics.
// Undefined behaviour aborts and names file:line of the threads involved: a barrier
//   waiting for a thread that exited, threads at different barriers, lanes at different
//   warp operations or masks, a mask naming a lane that exited or does not exist, a
//   shuffle reading a lane outside its mask, deadlock, cudaMalloc or a synchronous copy
//   inside a stream capture.
// Launch checks as CUDA does them: more than 1024 threads, a zero dimension or grid y/z
//   above 65535 give cudaErrorInvalidConfiguration; more than 48 KiB of dynamic shared
//   memory without cudaFuncSetAttribute(MaxDynamicSharedMemorySize) gives
//   cudaErrorInvalidValue.
// Poison.  Device allocations and shared memory (static and dynamic) start as 0xFF bytes
//   (NaN floats, -1 integers), so reading memory nobody wrote shows.
// Schedules.  PD_EMU_SCHEDULE=rr (default: each ready thread in turn runs until it blocks),
//   forward (always the lowest ready thread: warp 0 runs as far as it can before warp 1
//   starts) or reverse (the highest first), so warps drift apart as they may on a GPU.
// Sanitizers.  Under g++ -fsanitize=thread each CUDA thread is a TSan fiber whose only
//   happens-before edges are barriers, warp operations, atomics and block/launch
//   boundaries: a CPU racecheck. Under ASan the fiber switches are annotated.
// Graphs.  Stream capture records launches and copies as closures; a graph launch replays
//   them, so a kernel that bakes a per-token value into its arguments instead of reading
//   it from device memory fails the same tests on the CPU as on the GPU.
//
// Rules for kernel code that runs both ways (see ../../docs/gpu.md): launch through
// pd_launch (pd_kcompat.h), declare shared memory with PD_SHARED / PD_DYN_SMEM, use
// PD_WARP (32) not warpSize, and reach every barrier and warp operation from every thread
// it names (guard work with `if (live)`, never return before a barrier).
//
// Thread-safety: launches, copies and graph calls come from one host thread at a time
// (ponder's engine worker); blocks run on the pool.
#ifndef PD_EMU_H
#define PD_EMU_H

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PD_EMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define PD_EMU_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PD_EMU_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define PD_EMU_TSAN 1
#endif
#endif

#ifdef PD_EMU_ASAN
extern "C" void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                               size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                                size_t *size_old);
extern "C" void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif
#ifdef PD_EMU_TSAN
extern "C" void *__tsan_get_current_fiber(void);
extern "C" void *__tsan_create_fiber(unsigned flags);
extern "C" void __tsan_destroy_fiber(void *fiber);
extern "C" void __tsan_switch_to_fiber(void *fiber, unsigned flags);
extern "C" void __tsan_acquire(void *addr);
extern "C" void __tsan_release(void *addr);
#endif

// The emulator's own bookkeeping (fiber states, the scheduler, thread indices) is not
// instrumented under TSan: its happens-before edges are exactly CUDA's, so only the
// kernels' own memory accesses are checked.
#if defined(PD_EMU_TSAN)
#define PD_EMU_INTERNAL __attribute__((no_sanitize("thread")))
#else
#define PD_EMU_INTERNAL
#endif

// ---- CUDA spellings -------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
static inline float2 make_float2(float x, float y)
{
    return float2{x, y};
}
static inline int2 make_int2(int x, int y)
{
    return int2{x, y};
}

// ---- runtime API subset (types) ----------------------------------------------------------

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidDevice = 101,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
#define cudaHostAllocDefault 0u
#define cudaStreamNonBlocking 1u

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int multiProcessorCount;
    int major;
    int minor;
    int maxThreadsPerBlock;
    int l2CacheSize;
    int memoryBusWidth;
    int warpSize;
};

struct pd_emu_stream_st {
    int dummy;
};
struct pd_emu_event_st {
    std::chrono::steady_clock::time_point t;
};
typedef pd_emu_stream_st *cudaStream_t;
typedef pd_emu_event_st *cudaEvent_t;

namespace pd_emu {
struct Graph;
struct GraphExec;
}
typedef pd_emu::Graph *cudaGraph_t;
typedef pd_emu::GraphExec *cudaGraphExec_t;
typedef void *cudaGraphNode_t;

// ---- the emulator ---------------------------------------------------------------------------

namespace pd_emu {

enum class St : uint8_t { Ready, Barrier, Warp, Done };
enum class WOp : uint8_t { Shfl, Up, Down, Xor, Ballot, Any, All, Sync };
static const char *const wop_names[] = {"__shfl_sync",   "__shfl_up_sync", "__shfl_down_sync",
                                        "__shfl_xor_sync", "__ballot_sync", "__any_sync",
                                        "__all_sync",      "__syncwarp"};

enum class Sched : uint8_t { RoundRobin, Forward, Reverse };

static const size_t kStackSize = 256 * 1024;
static const size_t kStaticSmemMax = 48 * 1024;
static const size_t kDynSmemDefault = 48 * 1024;
static const size_t kDynSmemOptinMax = 227 * 1024;

struct Block;

struct Fiber {
    void *sp = nullptr; // saved stack pointer (x86-64 swap)
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    char *stack = nullptr; // lowest usable byte (above the guard page)
    Block *blk = nullptr;
    unsigned lin = 0; // linear thread index in the block
    uint3 tid = {0, 0, 0};
    St st = St::Ready;
    bool started = false;
    const char *file = "";
    int line = 0;
    WOp wop = WOp::Sync;
    unsigned wmask = 0;
    uint64_t wval = 0;
    int warg = 0;
    int wwidth = 32;
    uint64_t wres = 0;
    void *asan_fake = nullptr;
    void *tsan = nullptr;
};

// Per OS thread resources reused across blocks.
struct Worker {
    std::vector<char *> stacks; // fiber stacks (each kStackSize usable bytes)
    unsigned char *smem = nullptr; // static (first kStaticSmemMax) + dynamic shared memory
    size_t smem_cap = 0;
    std::vector<Fiber> fibers;
    ~Worker()
    {
        for (char *s : stacks) {
            munmap(s - getpagesize(), kStackSize + (size_t)getpagesize());
        }
        free(smem);
    }
};

struct Block {
    dim3 bid, bdim, gdim;
    unsigned n = 0; // threads
    Fiber *f = nullptr;
    const std::function<void()> *body = nullptr;
    unsigned char *static_smem = nullptr;
    size_t static_used = 0;
    const void *tag_key[64];   // PD_SHARED call sites seen in this block
    void *tag_ptr[64];
    unsigned n_tags = 0;
    unsigned char *dyn_smem = nullptr;
    void *sched_sp = nullptr;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
    void *sched_fake = nullptr;
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    void *sched_tsan = nullptr;
    unsigned warp_waiting[32] = {0}; // lanes of each warp at a warp operation
    char tsan_bar = 0;
    char tsan_warp[32] = {0};
    char tsan_end = 0;
};

// Initial-exec TLS: the emulator is linked into executables, and the fiber switch reads
// these on every warp operation and barrier.
#define PD_EMU_TLS __attribute__((tls_model("initial-exec")))
inline thread_local Fiber *t_cur PD_EMU_TLS = nullptr;
inline thread_local Block *t_blk PD_EMU_TLS = nullptr;
inline thread_local cudaError_t t_last_error PD_EMU_TLS = cudaSuccess;

[[noreturn]] inline void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pd_emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

inline Sched schedule()
{
    static const Sched s = [] {
        const char *e = getenv("PD_EMU_SCHEDULE");
        if (!e || !*e || strcmp(e, "rr") == 0) {
            return Sched::RoundRobin;
        }
        if (strcmp(e, "forward") == 0) {
            return Sched::Forward;
        }
        if (strcmp(e, "reverse") == 0) {
            return Sched::Reverse;
        }
        die("PD_EMU_SCHEDULE=%s: expected rr, forward or reverse", e);
    }();
    return s;
}

inline unsigned pool_threads()
{
    static const unsigned n = [] {
        const char *e = getenv("PD_EMU_THREADS");
        if (e && *e) {
            long v = strtol(e, nullptr, 10);
            return (unsigned)(v < 1 ? 1 : v > 64 ? 64 : v);
        }
        unsigned hw = std::thread::hardware_concurrency();
        return hw == 0 ? 1u : hw > 4 ? 4u : hw;
    }();
    return n;
}

inline Worker &worker()
{
    static thread_local Worker w;
    return w;
}

inline char *new_stack()
{
    size_t page = (size_t)getpagesize();
    void *p = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        die("cannot map a fiber stack");
    }
    mprotect(p, page, PROT_NONE); // guard page: a stack overflow faults
    return (char *)p + page;
}

} // namespace pd_emu

#if defined(__x86_64__)
// pd_emu_swap(save, next): saves the callee-saved registers on the current stack, stores
// the stack pointer in *save and resumes the context whose stack pointer is next (with an
// indirect jump rather than ret, which the return predictor would always get wrong).
// pd_emu_tramp: the first "return address" of a new fiber; calls r13(r12).
extern "C" void pd_emu_swap(void **save, void *next);
extern "C" void pd_emu_tramp(void);
asm(R"(
    .pushsection .text.pd_emu_swap,"axG",@progbits,pd_emu_swap,comdat
    .weak pd_emu_swap
    .type pd_emu_swap,@function
pd_emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    popq %r8
    jmpq *%r8
    .size pd_emu_swap,.-pd_emu_swap
    .popsection
    .pushsection .text.pd_emu_tramp,"axG",@progbits,pd_emu_tramp,comdat
    .weak pd_emu_tramp
    .type pd_emu_tramp,@function
pd_emu_tramp:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size pd_emu_tramp,.-pd_emu_tramp
    .popsection
)");
#endif

namespace pd_emu {

// ---- fiber switching ----------------------------------------------------------------------

PD_EMU_INTERNAL inline void fiber_main(Fiber *f);

#if !defined(__x86_64__)
inline void fiber_entry_uc(unsigned lo, unsigned hi)
{
    fiber_main((Fiber *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}
#endif

PD_EMU_INTERNAL inline void fiber_prepare(Fiber *f)
{
#ifdef PD_EMU_ASAN
    // The previous user of this stack never returned from its frames: clear their
    // redzones so the new thread does not trip over them.
    __asan_unpoison_memory_region(f->stack, kStackSize);
#endif
#if defined(__x86_64__)
    uintptr_t top = ((uintptr_t)(f->stack + kStackSize) - 64) & ~(uintptr_t)15;
    uint64_t *s = (uint64_t *)top;
    // After the pops and ret, rsp = top (16-aligned), so the call in the trampoline
    // enters fiber_main with the ABI's alignment.
    s[-1] = (uint64_t)(uintptr_t)&pd_emu_tramp; // return address
    s[-2] = 0;                                  // rbp
    s[-3] = 0;                                  // rbx
    s[-4] = (uint64_t)(uintptr_t)f;             // r12: argument
    s[-5] = (uint64_t)(uintptr_t)&fiber_main;   // r13: entry
    s[-6] = 0;                                  // r14
    s[-7] = 0;                                  // r15
    f->sp = &s[-7];
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = kStackSize;
    f->uc.uc_link = nullptr;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)())fiber_entry_uc, 2, (unsigned)(p & 0xFFFFFFFFu),
                (unsigned)(p >> 32));
#endif
}

// Scheduler -> fiber f; returns when f blocks or finishes.
PD_EMU_INTERNAL inline void switch_in(Block &b, Fiber *f)
{
    t_cur = f;
#ifdef PD_EMU_ASAN
    __sanitizer_start_switch_fiber(&b.sched_fake, f->stack, kStackSize);
#endif
#ifdef PD_EMU_TSAN
    // The first switch carries the scheduler's history (launch arguments, poisoned
    // shared memory, earlier blocks); later ones carry nothing.
    __tsan_switch_to_fiber(f->tsan, f->started ? 1u : 0u);
#endif
    f->started = true;
#if defined(__x86_64__)
    pd_emu_swap(&b.sched_sp, f->sp);
#else
    swapcontext(&b.sched_uc, &f->uc);
#endif
#ifdef PD_EMU_ASAN
    __sanitizer_finish_switch_fiber(b.sched_fake, nullptr, nullptr);
#endif
    t_cur = nullptr;
}

// Fiber f -> scheduler.
PD_EMU_INTERNAL inline void switch_out(Fiber *f)
{
    Block &b = *f->blk;
#ifdef PD_EMU_ASAN
    __sanitizer_start_switch_fiber(f->st == St::Done ? nullptr : &f->asan_fake, b.sched_bottom,
                                   b.sched_size);
#endif
#ifdef PD_EMU_TSAN
    __tsan_switch_to_fiber(b.sched_tsan, 1u);
#endif
#if defined(__x86_64__)
    pd_emu_swap(&f->sp, b.sched_sp);
#else
    swapcontext(&f->uc, &b.sched_uc);
#endif
#ifdef PD_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->asan_fake, &b.sched_bottom, &b.sched_size);
#endif
}

PD_EMU_INTERNAL inline void fiber_main(Fiber *f)
{
#ifdef PD_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &f->blk->sched_bottom, &f->blk->sched_size);
#endif
    (*f->blk->body)();
    f->st = St::Done;
    f->file = "(exited)";
    f->line = 0;
#ifdef PD_EMU_TSAN
    __tsan_release(&f->blk->tsan_end);
#endif
    switch_out(f);
    die("a finished thread was resumed");
}

PD_EMU_INTERNAL inline Fiber *cur()
{
    Fiber *f = t_cur;
    if (!f) {
        die("a device-only function was called outside a kernel");
    }
    return f;
}

// ---- barriers and warp operations -----------------------------------------------------------

PD_EMU_INTERNAL inline void syncthreads(const char *file, int line)
{
    Fiber *f = cur();
    f->st = St::Barrier;
    f->file = file;
    f->line = line;
#ifdef PD_EMU_TSAN
    __tsan_release(&f->blk->tsan_bar);
#endif
    switch_out(f);
#ifdef PD_EMU_TSAN
    __tsan_acquire(&f->blk->tsan_bar);
#endif
}

inline unsigned warp_lanes(const Block &b, unsigned warp)
{
    unsigned first = warp * 32;
    return b.n - first < 32 ? b.n - first : 32;
}

// Releases the warp operation that fiber f (just blocked) takes part in, if every lane of
// its mask has arrived. Aborts on mismatches.
PD_EMU_INTERNAL inline void try_release_warp(Block &b, Fiber *f)
{
    unsigned warp = f->lin / 32, lane = f->lin % 32;
    unsigned n_lanes = warp_lanes(b, warp);
    unsigned mask = f->wmask;
    if (b.warp_waiting[warp] < (unsigned)__builtin_popcount(mask) && (mask >> lane & 1u)) {
        return; // not everyone named can be here yet
    }
    if (!(mask >> lane & 1u)) {
        die("%s:%d: %s: the calling lane %u is not in mask 0x%08x", f->file, f->line,
            wop_names[(int)f->wop], lane, mask);
    }
    Fiber *w = b.f + warp * 32;
    for (unsigned l = 0; l < 32; l++) {
        if (!(mask >> l & 1u)) {
            continue;
        }
        if (l >= n_lanes) {
            die("%s:%d: %s: mask 0x%08x names lane %u, which does not exist (block of %u "
                "threads)", f->file, f->line, wop_names[(int)f->wop], mask, l, b.n);
        }
        Fiber *o = &w[l];
        if (o->st == St::Done) {
            die("%s:%d: %s: mask 0x%08x names lane %u, which has exited", f->file, f->line,
                wop_names[(int)f->wop], mask, l);
        }
        if (o->st != St::Warp) {
            return; // not there yet
        }
        if (o->wop != f->wop || o->wmask != mask) {
            die("lanes at different warp operations: lane %u at %s:%d (%s, mask 0x%08x), "
                "lane %u at %s:%d (%s, mask 0x%08x)", lane, f->file, f->line,
                wop_names[(int)f->wop], mask, l, o->file, o->line, wop_names[(int)o->wop],
                o->wmask);
        }
    }
    // Everyone is here: compute each lane's result.
    uint64_t ballot = 0;
    bool any = false, all = true;
    for (unsigned l = 0; l < 32; l++) {
        if (mask >> l & 1u) {
            bool p = w[l].wval != 0;
            ballot |= (uint64_t)p << l;
            any = any || p;
            all = all && p;
        }
    }
    for (unsigned l = 0; l < 32; l++) {
        if (!(mask >> l & 1u)) {
            continue;
        }
        Fiber *o = &w[l];
        int width = o->wwidth;
        unsigned seg = l & ~(unsigned)(width - 1);
        long src = l;
        switch (o->wop) {
        case WOp::Shfl:
            src = (long)seg + (o->warg & (width - 1));
            break;
        case WOp::Up:
            src = (long)l - o->warg;
            if (src < (long)seg) {
                src = l;
            }
            break;
        case WOp::Down:
            src = (long)l + o->warg;
            if (src >= (long)(seg + (unsigned)width)) {
                src = l;
            }
            break;
        case WOp::Xor:
            src = (long)(l ^ (unsigned)o->warg);
            if ((unsigned)src < seg || (unsigned)src >= seg + (unsigned)width) {
                src = l;
            }
            break;
        case WOp::Ballot:
            o->wres = ballot;
            break;
        case WOp::Any:
            o->wres = any;
            break;
        case WOp::All:
            o->wres = all;
            break;
        case WOp::Sync:
            break;
        }
        if (o->wop == WOp::Shfl || o->wop == WOp::Up || o->wop == WOp::Down ||
            o->wop == WOp::Xor) {
            if (!(mask >> src & 1u)) {
                die("%s:%d: %s: lane %u reads lane %ld, which is outside mask 0x%08x",
                    o->file, o->line, wop_names[(int)o->wop], l, src, mask);
            }
            o->wres = w[src].wval;
        }
    }
    for (unsigned l = 0; l < 32; l++) {
        if (mask >> l & 1u) {
            w[l].st = St::Ready;
        }
    }
    b.warp_waiting[warp] -= (unsigned)__builtin_popcount(mask);
}

PD_EMU_INTERNAL inline uint64_t warp_op(WOp op, unsigned mask, uint64_t val, int arg, int width,
                        const char *file, int line)
{
    Fiber *f = cur();
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
        die("%s:%d: %s: width %d is not a power of two in 1..32", file, line,
            wop_names[(int)op], width);
    }
    f->st = St::Warp;
    f->blk->warp_waiting[f->lin / 32]++;
    f->wop = op;
    f->wmask = mask;
    f->wval = val;
    f->warg = arg;
    f->wwidth = width;
    f->file = file;
    f->line = line;
#ifdef PD_EMU_TSAN
    __tsan_release(&f->blk->tsan_warp[f->lin / 32]);
#endif
    switch_out(f);
#ifdef PD_EMU_TSAN
    __tsan_acquire(&f->blk->tsan_warp[f->lin / 32]);
#endif
    return f->wres;
}

template <typename T> inline uint64_t to_bits(T v)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <typename T> inline T from_bits(uint64_t u)
{
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}

// ---- the block scheduler --------------------------------------------------------------------

[[noreturn]] PD_EMU_INTERNAL inline void die_stuck(Block &b, const char *what)
{
    fprintf(stderr, "pd_emu: %s in block (%u,%u,%u); thread states:\n", what, b.bid.x, b.bid.y,
            b.bid.z);
    static const char *const names[] = {"ready", "barrier", "warp op", "exited"};
    unsigned shown = 0;
    for (unsigned i = 0; i < b.n && shown < 64; i++) {
        Fiber *f = &b.f[i];
        if (i > 0 && f->st == b.f[i - 1].st && f->file == b.f[i - 1].file &&
            f->line == b.f[i - 1].line) {
            continue;
        }
        fprintf(stderr, "  thread %u (%u,%u,%u): %s at %s:%d\n", i, f->tid.x, f->tid.y,
                f->tid.z, names[(int)f->st], f->file, f->line);
        shown++;
    }
    die("%s", what);
}

PD_EMU_INTERNAL inline void run_block(const std::function<void()> &body, dim3 bid, dim3 bdim, dim3 gdim,
                      size_t dyn_bytes)
{
    Worker &wk = worker();
    unsigned n = bdim.x * bdim.y * bdim.z;
    while (wk.stacks.size() < n) {
        wk.stacks.push_back(new_stack());
    }
    size_t need = kStaticSmemMax + dyn_bytes;
    if (wk.smem_cap < need) {
        free(wk.smem);
        wk.smem = (unsigned char *)aligned_alloc(64, (need + 63) & ~(size_t)63);
        if (!wk.smem) {
            die("out of memory (shared memory)");
        }
        wk.smem_cap = need;
    }
    memset(wk.smem + kStaticSmemMax, 0xFF, dyn_bytes); // static arrays: at first use
    if (wk.fibers.size() < n) {
        wk.fibers.resize(n);
    }
    Block b;
    b.bid = bid;
    b.bdim = bdim;
    b.gdim = gdim;
    b.n = n;
    b.f = wk.fibers.data();
    b.body = &body;
    b.static_smem = wk.smem;
    b.dyn_smem = wk.smem + kStaticSmemMax;
#ifdef PD_EMU_TSAN
    b.sched_tsan = __tsan_get_current_fiber();
#endif
    for (unsigned i = 0; i < n; i++) {
        Fiber *f = &b.f[i];
        *f = Fiber();
        f->stack = wk.stacks[i];
        f->blk = &b;
        f->lin = i;
        f->tid = uint3{i % bdim.x, (i / bdim.x) % bdim.y, i / (bdim.x * bdim.y)};
        f->file = "(not started)";
#ifdef PD_EMU_TSAN
        f->tsan = __tsan_create_fiber(0);
#endif
        fiber_prepare(f);
    }
    Block *saved = t_blk;
    t_blk = &b;
    Sched sched = schedule();
    unsigned next = 0;
    for (;;) {
        Fiber *pick = nullptr;
        if (sched == Sched::RoundRobin) {
            for (unsigned k = 0; k < n; k++) {
                unsigned i = (next + k) % n;
                if (b.f[i].st == St::Ready) {
                    pick = &b.f[i];
                    next = i + 1;
                    break;
                }
            }
        } else if (sched == Sched::Forward) {
            for (unsigned i = 0; i < n && !pick; i++) {
                if (b.f[i].st == St::Ready) {
                    pick = &b.f[i];
                }
            }
        } else {
            for (unsigned i = n; i-- > 0 && !pick;) {
                if (b.f[i].st == St::Ready) {
                    pick = &b.f[i];
                }
            }
        }
        if (pick) {
            switch_in(b, pick);
            if (pick->st == St::Warp) {
                try_release_warp(b, pick);
            }
            continue;
        }
        unsigned done = 0, at_bar = 0;
        Fiber *first_bar = nullptr, *first_done = nullptr;
        for (unsigned i = 0; i < n; i++) {
            Fiber *f = &b.f[i];
            if (f->st == St::Done) {
                done++;
                first_done = first_done ? first_done : f;
            } else if (f->st == St::Barrier) {
                at_bar++;
                if (!first_bar) {
                    first_bar = f;
                } else if (f->file != first_bar->file || f->line != first_bar->line) {
                    die("threads at different barriers: thread %u at %s:%d, thread %u at "
                        "%s:%d", first_bar->lin, first_bar->file, first_bar->line, f->lin,
                        f->file, f->line);
                }
            }
        }
        if (done == n) {
            break;
        }
        if (at_bar > 0 && at_bar + done == n && done > 0) {
            die("__syncthreads at %s:%d waits for thread %u, which has exited",
                first_bar->file, first_bar->line, first_done->lin);
        }
        if (at_bar == n) {
            for (unsigned i = 0; i < n; i++) {
                b.f[i].st = St::Ready;
            }
            continue;
        }
        die_stuck(b, "deadlock (threads wait at barriers and warp operations that can never "
                     "complete)");
    }
    t_blk = saved;
#ifdef PD_EMU_TSAN
    __tsan_acquire(&b.tsan_end);
    for (unsigned i = 0; i < n; i++) {
        __tsan_destroy_fiber(b.f[i].tsan);
    }
#endif
}

// ---- the block pool ---------------------------------------------------------------------------

struct Pool {
    std::mutex mu;
    std::condition_variable cv, done_cv;
    const std::function<void()> *job = nullptr;
    unsigned gen = 0;
    unsigned busy = 0;
    std::vector<std::thread> threads;

    void start(unsigned n)
    {
        for (unsigned i = 0; i < n; i++) {
            threads.emplace_back([this] { loop(); });
            threads.back().detach(); // lives until the process exits
        }
    }
    void loop()
    {
        unsigned seen = 0;
        for (;;) {
            const std::function<void()> *j;
            {
                std::unique_lock<std::mutex> lk(mu);
                cv.wait(lk, [&] { return gen != seen; });
                seen = gen;
                j = job;
            }
            (*j)();
            {
                std::lock_guard<std::mutex> lk(mu);
                busy--;
            }
            done_cv.notify_all();
        }
    }
    // Runs job on every pool thread and the caller; returns when all are done.
    void run(const std::function<void()> &j)
    {
        {
            std::lock_guard<std::mutex> lk(mu);
            job = &j;
            busy = (unsigned)threads.size();
            gen++;
        }
        cv.notify_all();
        j();
        std::unique_lock<std::mutex> lk(mu);
        done_cv.wait(lk, [&] { return busy == 0; });
    }
};

inline Pool &pool()
{
    static Pool *p = [] {
        Pool *q = new Pool;
        q->start(pool_threads() - 1);
        return q;
    }();
    return *p;
}

inline void run_grid(const std::function<void()> &body, dim3 g, dim3 b, size_t dyn)
{
    unsigned long n_blocks = (unsigned long)g.x * g.y * g.z;
    std::atomic<unsigned long> next{0};
    std::function<void()> job = [&] {
        for (;;) {
            unsigned long i = next.fetch_add(1);
            if (i >= n_blocks) {
                return;
            }
            dim3 bid((unsigned)(i % g.x), (unsigned)((i / g.x) % g.y),
                     (unsigned)(i / ((unsigned long)g.x * g.y)));
            run_block(body, bid, b, g, dyn);
        }
    };
    if (n_blocks == 1 || pool_threads() == 1) {
        job();
    } else {
        pool().run(job);
    }
}

// PD_EMU_PROFILE=1: time per kernel (by launch site), printed at exit.
struct Profile {
    std::mutex mu;
    std::map<std::string, std::pair<double, long>> t;
    ~Profile()
    {
        std::vector<std::pair<double, std::string>> v;
        for (auto &e : t) {
            v.emplace_back(e.second.first, e.first + " x" + std::to_string(e.second.second));
        }
        std::sort(v.rbegin(), v.rend());
        for (auto &e : v) {
            fprintf(stderr, "pd_emu profile: %9.3f s  %s\n", e.first, e.second.c_str());
        }
    }
};
inline Profile *&profile_ptr()
{
    static Profile *p = nullptr;
    return p;
}
inline void profile_flush()
{
    delete profile_ptr();
    profile_ptr() = nullptr;
}
inline Profile *profile()
{
    static bool on = [] {
        if (getenv("PD_EMU_PROFILE")) {
            profile_ptr() = new Profile;
            atexit(profile_flush);
        }
        return true;
    }();
    (void)on;
    return profile_ptr();
}

inline void run_grid_timed(const char *name, const std::function<void()> &body, dim3 g, dim3 b,
                           size_t dyn)
{
    Profile *p = profile();
    if (!p) {
        run_grid(body, g, b, dyn);
        return;
    }
    auto t0 = std::chrono::steady_clock::now();
    run_grid(body, g, b, dyn);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string key(name);
    size_t k = key.find("[with P = ");
    key = key.substr(k == std::string::npos ? 0 : k, 90);
    std::lock_guard<std::mutex> lk(p->mu);
    auto &e = p->t[key];
    e.first += s;
    e.second++;
}

// ---- shared memory ------------------------------------------------------------------------------

PD_EMU_INTERNAL inline void *shared_array(const void *tag, size_t bytes)
{
    Block *b = cur()->blk;
    for (unsigned i = 0; i < b->n_tags; i++) {
        if (b->tag_key[i] == tag) {
            return b->tag_ptr[i];
        }
    }
    size_t off = (b->static_used + 15) & ~(size_t)15;
    if (off + bytes > kStaticSmemMax || b->n_tags == 64) {
        die("static shared memory above %zu bytes or 64 arrays", kStaticSmemMax);
    }
    b->static_used = off + bytes;
    void *p = b->static_smem + off;
    memset(p, 0xFF, bytes); // poison: nobody has written it in this block
    b->tag_key[b->n_tags] = tag;
    b->tag_ptr[b->n_tags++] = p;
    return p;
}

PD_EMU_INTERNAL inline void *dyn_smem()
{
    return cur()->blk->dyn_smem;
}

// ---- graphs -----------------------------------------------------------------------------------

struct Graph {
    std::vector<std::function<void()>> nodes;
};
struct GraphExec {
    std::vector<std::function<void()>> nodes;
};
inline thread_local Graph *t_capture = nullptr;

inline bool capturing()
{
    return t_capture != nullptr;
}

// ---- memory accounting ---------------------------------------------------------------------------

struct Mem {
    std::mutex mu;
    std::map<uintptr_t, size_t> live; // device allocations
    size_t used = 0;
    size_t total = 0;
};
inline Mem &mem()
{
    static Mem *m = [] {
        Mem *x = new Mem;
        const char *e = getenv("PD_EMU_MEM_MIB");
        long mib = e && *e ? strtol(e, nullptr, 10) : 16384;
        x->total = (size_t)(mib < 1 ? 1 : mib) << 20;
        return x;
    }();
    return *m;
}

inline std::map<const void *, size_t> &func_smem()
{
    static std::map<const void *, size_t> m;
    return m;
}

} // namespace pd_emu

// ---- device-side spellings ------------------------------------------------------------------

namespace pd_emu {
PD_EMU_INTERNAL inline uint3 thread_idx()
{
    return cur()->tid;
}
PD_EMU_INTERNAL inline dim3 block_idx()
{
    return cur()->blk->bid;
}
PD_EMU_INTERNAL inline dim3 block_dim()
{
    return cur()->blk->bdim;
}
PD_EMU_INTERNAL inline dim3 grid_dim()
{
    return cur()->blk->gdim;
}
} // namespace pd_emu

#define threadIdx (::pd_emu::thread_idx())
#define blockIdx (::pd_emu::block_idx())
#define blockDim (::pd_emu::block_dim())
#define gridDim (::pd_emu::grid_dim())
#define __syncthreads() ::pd_emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(mask) ((void)::pd_emu::warp_op(::pd_emu::WOp::Sync, (mask), 0, 0, 32, \
                                                  __FILE__, __LINE__))
#define __shfl_sync(mask, v, src, ...) \
    ::pd_emu::shfl_impl(::pd_emu::WOp::Shfl, (mask), (v), (src), __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_up_sync(mask, v, d, ...) \
    ::pd_emu::shfl_impl(::pd_emu::WOp::Up, (mask), (v), (int)(d), __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_down_sync(mask, v, d, ...) \
    ::pd_emu::shfl_impl(::pd_emu::WOp::Down, (mask), (v), (int)(d), __FILE__, __LINE__, \
                        ##__VA_ARGS__)
#define __shfl_xor_sync(mask, v, m, ...) \
    ::pd_emu::shfl_impl(::pd_emu::WOp::Xor, (mask), (v), (int)(m), __FILE__, __LINE__, \
                        ##__VA_ARGS__)
#define __ballot_sync(mask, p) \
    ((unsigned)::pd_emu::warp_op(::pd_emu::WOp::Ballot, (mask), (p) ? 1 : 0, 0, 32, __FILE__, \
                                 __LINE__))
#define __any_sync(mask, p) \
    ((int)::pd_emu::warp_op(::pd_emu::WOp::Any, (mask), (p) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, p) \
    ((int)::pd_emu::warp_op(::pd_emu::WOp::All, (mask), (p) ? 1 : 0, 0, 32, __FILE__, __LINE__))

namespace pd_emu {
template <typename T>
inline T shfl_impl(WOp op, unsigned mask, T v, int arg, const char *file, int line,
                   int width = 32)
{
    return from_bits<T>(warp_op(op, mask, to_bits(v), arg, width, file, line));
}
} // namespace pd_emu

// ---- intrinsics -----------------------------------------------------------------------------

static inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, 4);
    return i;
}
static inline unsigned __float_as_uint(float f)
{
    unsigned i;
    memcpy(&i, &f, 4);
    return i;
}
static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline float __uint_as_float(unsigned i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline long long __double_as_longlong(double d)
{
    long long i;
    memcpy(&i, &d, 8);
    return i;
}
static inline double __longlong_as_double(long long i)
{
    double d;
    memcpy(&d, &i, 8);
    return d;
}
static inline int __popc(unsigned x)
{
    return __builtin_popcount(x);
}
static inline int __popcll(unsigned long long x)
{
    return __builtin_popcountll(x);
}
static inline int __clz(int x)
{
    return x == 0 ? 32 : __builtin_clz((unsigned)x);
}
static inline int __ffs(int x)
{
    return __builtin_ffs(x);
}
// Four signed (or unsigned) byte products of a and b, summed, plus c.
static inline int __dp4a(int a, int b, int c)
{
    for (int k = 0; k < 4; k++) {
        c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    }
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c)
{
    for (int k = 0; k < 4; k++) {
        c += ((a >> (8 * k)) & 0xFFu) * ((b >> (8 * k)) & 0xFFu);
    }
    return c;
}
static inline float __fdividef(float a, float b)
{
    return a / b;
}
static inline float rsqrtf(float x)
{
    return 1.0f / sqrtf(x);
}
static inline float __fmul_rn(float a, float b)
{
    return a * b;
}
static inline float __fadd_rn(float a, float b)
{
    return a + b;
}
static inline float __fsub_rn(float a, float b)
{
    return a - b;
}
template <typename T> static inline T __ldg(const T *p)
{
    return *p;
}
// ThreadSanitizer does not model stand-alone fences (gcc refuses them under -Werror=tsan);
// there a fence is a sequentially consistent read-modify-write of one shared word, which
// orders the same way for the kernels' purposes and which the sanitizer does understand.
#if defined(__SANITIZE_THREAD__)
#define PD_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PD_EMU_TSAN 1
#endif
#endif
static inline void pd_emu_fence(void)
{
#ifdef PD_EMU_TSAN
    static int word;
    __atomic_fetch_add(&word, 0, __ATOMIC_SEQ_CST);
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
static inline void __threadfence(void)
{
    pd_emu_fence();
}
static inline void __threadfence_block(void)
{
    pd_emu_fence();
}

// Atomics: real atomics (blocks run on several OS threads).
static inline int atomicAdd(int *p, int v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline unsigned atomicAdd(unsigned *p, unsigned v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
template <typename F> static inline F pd_emu_atomic_fadd(F *p, F v)
{
    F old, want;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    do {
        want = old + v;
    } while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST));
    return old;
}
static inline float atomicAdd(float *p, float v)
{
    return pd_emu_atomic_fadd(p, v);
}
static inline double atomicAdd(double *p, double v)
{
    return pd_emu_atomic_fadd(p, v);
}
template <typename I> static inline I pd_emu_atomic_max(I *p, I v)
{
    I old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
    return old;
}
template <typename I> static inline I pd_emu_atomic_min(I *p, I v)
{
    I old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
    return old;
}
static inline int atomicMax(int *p, int v)
{
    return pd_emu_atomic_max(p, v);
}
static inline unsigned atomicMax(unsigned *p, unsigned v)
{
    return pd_emu_atomic_max(p, v);
}
static inline int atomicMin(int *p, int v)
{
    return pd_emu_atomic_min(p, v);
}
static inline unsigned atomicMin(unsigned *p, unsigned v)
{
    return pd_emu_atomic_min(p, v);
}
static inline int atomicExch(int *p, int v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline unsigned atomicExch(unsigned *p, unsigned v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int atomicCAS(int *p, int cmp, int v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
static inline unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
static inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp,
                                           unsigned long long v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

// ---- runtime API subset (functions) ---------------------------------------------------------

static inline cudaError_t pd_emu_fail(cudaError_t e)
{
    pd_emu::t_last_error = e;
    return e;
}

static inline const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer:
        return "invalid device pointer";
    case cudaErrorInvalidDevice:
        return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    }
    return "unknown error";
}
static inline cudaError_t cudaGetLastError(void)
{
    cudaError_t e = pd_emu::t_last_error;
    pd_emu::t_last_error = cudaSuccess;
    return e;
}
static inline cudaError_t cudaPeekAtLastError(void)
{
    return pd_emu::t_last_error;
}
static inline cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int dev)
{
    return dev == 0 ? cudaSuccess : pd_emu_fail(cudaErrorInvalidDevice);
}
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
    if (dev != 0) {
        return pd_emu_fail(cudaErrorInvalidDevice);
    }
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "ponder CPU emulator");
    p->totalGlobalMem = pd_emu::mem().total;
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = pd_emu::kDynSmemOptinMax;
    p->multiProcessorCount = (int)pd_emu::pool_threads();
    p->major = 0;
    p->minor = 0;
    p->maxThreadsPerBlock = 1024;
    p->warpSize = 32;
    return cudaSuccess;
}
static inline cudaError_t cudaDeviceSynchronize(void)
{
    return cudaSuccess;
}
static inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total)
{
    pd_emu::Mem &m = pd_emu::mem();
    std::lock_guard<std::mutex> lk(m.mu);
    *total = m.total;
    *free_b = m.used < m.total ? m.total - m.used : 0;
    return cudaSuccess;
}
static inline cudaError_t cudaMalloc(void **p, size_t bytes)
{
    if (pd_emu::capturing()) {
        pd_emu::die("cudaMalloc inside a stream capture");
    }
    pd_emu::Mem &m = pd_emu::mem();
    std::lock_guard<std::mutex> lk(m.mu);
    if (bytes > m.total - m.used) {
        *p = nullptr;
        return pd_emu_fail(cudaErrorMemoryAllocation);
    }
    size_t n = (bytes + 255) & ~(size_t)255;
    void *q = aligned_alloc(256, n ? n : 256);
    if (!q) {
        *p = nullptr;
        return pd_emu_fail(cudaErrorMemoryAllocation);
    }
    memset(q, 0xFF, n ? n : 256); // poison
    m.live[(uintptr_t)q] = bytes;
    m.used += bytes;
    *p = q;
    return cudaSuccess;
}
template <typename T> static inline cudaError_t cudaMalloc(T **p, size_t bytes)
{
    return cudaMalloc((void **)p, bytes);
}
static inline cudaError_t cudaFree(void *p)
{
    if (!p) {
        return cudaSuccess;
    }
    pd_emu::Mem &m = pd_emu::mem();
    std::lock_guard<std::mutex> lk(m.mu);
    auto it = m.live.find((uintptr_t)p);
    if (it == m.live.end()) {
        pd_emu::die("cudaFree(%p): not a live device allocation", p);
    }
    m.used -= it->second;
    m.live.erase(it);
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return *p ? cudaSuccess : pd_emu_fail(cudaErrorMemoryAllocation);
}
static inline cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned)
{
    return cudaMallocHost(p, bytes);
}
static inline cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreate(cudaStream_t *s)
{
    *s = new pd_emu_stream_st{0};
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    return cudaStreamCreate(s);
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete s;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t)
{
    if (pd_emu::capturing()) {
        pd_emu::die("cudaStreamSynchronize inside a stream capture");
    }
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes,
                                          cudaMemcpyKind, cudaStream_t = nullptr)
{
    if (bytes && (!dst || !src)) {
        return pd_emu_fail(cudaErrorInvalidValue);
    }
    if (pd_emu::capturing()) {
        pd_emu::t_capture->nodes.push_back([dst, src, bytes] { memcpy(dst, src, bytes); });
    } else if (bytes) {
        memcpy(dst, src, bytes);
    }
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes,
                                     cudaMemcpyKind kind)
{
    if (pd_emu::capturing()) {
        pd_emu::die("synchronous cudaMemcpy inside a stream capture");
    }
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
static inline cudaError_t cudaMemsetAsync(void *dst, int v, size_t bytes, cudaStream_t = nullptr)
{
    if (bytes && !dst) {
        return pd_emu_fail(cudaErrorInvalidValue);
    }
    if (pd_emu::capturing()) {
        pd_emu::t_capture->nodes.push_back([dst, v, bytes] { memset(dst, v, bytes); });
    } else if (bytes) {
        memset(dst, v, bytes);
    }
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void *dst, int v, size_t bytes)
{
    if (pd_emu::capturing()) {
        pd_emu::die("synchronous cudaMemset inside a stream capture");
    }
    return cudaMemsetAsync(dst, v, bytes, nullptr);
}
static inline cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    *e = new pd_emu_event_st();
    return cudaSuccess;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr)
{
    e->t = std::chrono::steady_clock::now();
    return cudaSuccess;
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t)
{
    return cudaSuccess;
}
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return cudaSuccess;
}
static inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode)
{
    if (pd_emu::capturing()) {
        return pd_emu_fail(cudaErrorStreamCaptureUnsupported);
    }
    pd_emu::t_capture = new pd_emu::Graph;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g)
{
    if (!pd_emu::capturing()) {
        return pd_emu_fail(cudaErrorInvalidValue);
    }
    *g = pd_emu::t_capture;
    pd_emu::t_capture = nullptr;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g,
                                               unsigned long long = 0)
{
    *e = new pd_emu::GraphExec{g->nodes};
    return cudaSuccess;
}
static inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t)
{
    for (auto &n : e->nodes) {
        n();
    }
    return pd_emu::t_last_error;
}
static inline cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *, size_t *n)
{
    *n = g->nodes.size();
    return cudaSuccess;
}
static inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}
template <typename... P>
static inline cudaError_t cudaFuncSetAttribute(void (*k)(P...), cudaFuncAttribute a, int v)
{
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 ||
        (size_t)v > pd_emu::kDynSmemOptinMax) {
        return pd_emu_fail(cudaErrorInvalidValue);
    }
    pd_emu::func_smem()[(const void *)k] = (size_t)v;
    return cudaSuccess;
}

// ---- launching --------------------------------------------------------------------------------

// Launches kernel k over grid g of blocks b with smem bytes of dynamic shared memory,
// converting the arguments to the kernel's parameter types as CUDA does. Synchronous
// (or recorded, inside a stream capture). Returns the launch's error, as
// cudaGetLastError() would after <<<>>>.
template <typename... P, typename... A>
static inline cudaError_t pd_launch(void (*k)(P...), dim3 g, dim3 b, size_t smem,
                                    cudaStream_t, A &&...args)
{
    static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
    unsigned long threads = (unsigned long)b.x * b.y * b.z;
    if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0 || threads > 1024 ||
        b.z > 64 || g.y > 65535 || g.z > 65535) {
        return pd_emu_fail(cudaErrorInvalidConfiguration);
    }
    size_t limit = pd_emu::kDynSmemDefault;
    auto it = pd_emu::func_smem().find((const void *)k);
    if (it != pd_emu::func_smem().end()) {
        limit = it->second > limit ? it->second : limit;
    }
    if (smem > limit) {
        return pd_emu_fail(cudaErrorInvalidValue);
    }
    std::function<void()> body = [k, tup = std::tuple<std::decay_t<P>...>(
                                          static_cast<std::decay_t<P>>(args)...)]() {
        std::apply(k, tup);
    };
    const char *name = __PRETTY_FUNCTION__;
    if (pd_emu::capturing()) {
        pd_emu::t_capture->nodes.push_back(
            [body, g, b, smem, name] { pd_emu::run_grid_timed(name, body, g, b, smem); });
    } else {
        pd_emu::run_grid_timed(name, body, g, b, smem);
    }
    return cudaSuccess;
}

// Shared memory declarations (see pd_kcompat.h for the CUDA spelling).
#define PD_SHARED(T, name, count)                                                            \
    static char pd_shared_tag_##name;                                                        \
    T *name = static_cast<T *>(::pd_emu::shared_array(&pd_shared_tag_##name,                 \
                                                      sizeof(T) * (size_t)(count)))
#define PD_DYN_SMEM(T, name) T *name = static_cast<T *>(::pd_emu::dyn_smem())

#endif
