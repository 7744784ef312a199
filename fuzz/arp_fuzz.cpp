// Fuzz: ARP. parse -> emit -> parse must agree, and emit must reproduce the 28 input bytes.
#include <ankanet/wire/arp.hpp>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace ankanet::wire;
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};
    const auto first = arp::repr::parse(input);
    if (!first) return 0;

    std::array<std::byte, arp::packet_len> out{};
    if (first->emit(out)) std::abort();
    const auto second = arp::repr::parse(const_bytes{out});
    if (!second || !(*second == *first)) std::abort();
    if (std::memcmp(out.data(), data, out.size()) != 0) std::abort();
    return 0;
}
