// Fuzz: Ethernet frames. parse -> emit -> parse must give the same repr, and the emitted header
// must equal the input's header bytes (the repr loses nothing the header holds).
#include <ankanet/wire/ethernet.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace ankanet::wire;
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};
    const auto first = ethernet::repr::parse(input);
    if (!first) return 0;

    std::vector<std::byte> out(first->buffer_len());
    if (first->emit(out)) std::abort();
    const auto second = ethernet::repr::parse(const_bytes{out});
    if (!second || !(*second == *first)) std::abort();
    // 0x88a8 tags are re-emitted as 0x8100; everything else is byte-exact.
    const auto outer = ethernet::packet<const_bytes>{input}.outer_ethertype();
    if (outer != ethernet::ethertype::qinq && std::memcmp(out.data(), data, out.size()) != 0) std::abort();
    return 0;
}
