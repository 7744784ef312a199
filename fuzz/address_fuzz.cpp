// Fuzz: address text. Whatever parses must print back to text that parses to the same value;
// the canonical form of a MAC is lower-case with colons, of IPv4 the input itself.
#include <ankanet/wire/address.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace ankanet::wire;
    const std::string_view text{reinterpret_cast<const char*>(data), size};

    if (const auto mac = mac_address::parse(text)) {
        const auto again = mac_address::parse(to_string(*mac));
        if (!again || *again != *mac) std::abort();
    }
    if (const auto ip = ipv4_address::parse(text)) {
        if (to_string(*ip) != text) std::abort(); // strict parsing: one spelling per address
    }
    if (const auto prefix = ipv4_prefix::parse(text)) {
        if (to_string(*prefix) != text || !prefix->contains(prefix->address())) std::abort();
        if (prefix->network() > prefix->broadcast()) std::abort();
    }
    return 0;
}
