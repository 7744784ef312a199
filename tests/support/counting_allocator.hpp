// Test support: the global allocation functions replaced by counting ones, for tests and
// benchmarks that show what the data path allocates (allocations) or what an idle object holds
// (live_bytes). Replacing them is allowed in one translation unit of a program: include this
// header from exactly one .cpp of each test or benchmark executable. Every form is replaced (Catch
// uses the nothrow one) so each allocation meets its own deallocation.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include <malloc.h>

namespace ankanet::test::heap {

/// Calls of any operator new so far.
inline std::atomic<std::uint64_t> allocations{0};
/// Bytes the heap holds for live allocations (malloc_usable_size: what each one really costs).
inline std::atomic<std::int64_t> live_bytes{0};

[[gnu::noinline]] inline void* allocate(std::size_t size, std::size_t alignment) noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);
    void* p = alignment <= alignof(std::max_align_t)
                  ? std::malloc(size == 0 ? 1 : size)
                  : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    if (p != nullptr) live_bytes.fetch_add(static_cast<std::int64_t>(::malloc_usable_size(p)), std::memory_order_relaxed);
    return p;
}
inline void* allocate_or_throw(std::size_t size, std::size_t alignment) {
    if (void* p = allocate(size, alignment)) return p;
    throw std::bad_alloc{};
}
// Not inlined: GCC would otherwise pair the malloc and the free across the replacements and warn.
[[gnu::noinline]] inline void release(void* p) noexcept {
    if (p == nullptr) return;
    live_bytes.fetch_sub(static_cast<std::int64_t>(::malloc_usable_size(p)), std::memory_order_relaxed);
    std::free(p);
}

} // namespace ankanet::test::heap

void* operator new(std::size_t n) { return ankanet::test::heap::allocate_or_throw(n, 0); }
void* operator new[](std::size_t n) { return ankanet::test::heap::allocate_or_throw(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
    return ankanet::test::heap::allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return ankanet::test::heap::allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return ankanet::test::heap::allocate(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return ankanet::test::heap::allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return ankanet::test::heap::allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return ankanet::test::heap::allocate(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { ankanet::test::heap::release(p); }
void operator delete[](void* p) noexcept { ankanet::test::heap::release(p); }
void operator delete(void* p, std::size_t) noexcept { ankanet::test::heap::release(p); }
void operator delete[](void* p, std::size_t) noexcept { ankanet::test::heap::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { ankanet::test::heap::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { ankanet::test::heap::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { ankanet::test::heap::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { ankanet::test::heap::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { ankanet::test::heap::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { ankanet::test::heap::release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { ankanet::test::heap::release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { ankanet::test::heap::release(p); }
