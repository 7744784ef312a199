// Fuzz support: the cursor over libFuzzer's input that the targets whose input is a program
// (fuzz/switch_fuzz.cpp, fuzz/neighbor_table_fuzz.cpp, fuzz/mac_translator_fuzz.cpp,
// fuzz/network_fuzz.cpp) read their opcodes and operands with. Past the end every byte reads as
// 0, so every input is a program.
#pragma once

#include <ankanet/wire/address.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ankanet::fuzz {

/// Reads libFuzzer's input front to back; a missing byte reads as 0.
class input_reader {
public:
    input_reader(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

    /// Whether every byte has been read.
    bool done() const noexcept { return pos_ >= size_; }
    /// The next byte (0 past the end).
    std::uint8_t byte() noexcept { return pos_ < size_ ? data_[pos_++] : 0; }
    /// The next byte without reading it (0 past the end).
    std::uint8_t peek() const noexcept { return pos_ < size_ ? data_[pos_] : 0; }
    /// The next four bytes, big-endian.
    std::uint32_t be32() noexcept {
        std::uint32_t value = 0;
        for (int i = 0; i < 4; ++i) value = value << 8 | byte();
        return value;
    }
    /// The next six bytes as a MAC address.
    wire::mac_address mac() noexcept {
        wire::mac_address::bytes_type octets{};
        for (auto& octet : octets) octet = byte();
        return wire::mac_address{octets};
    }
    /// A MAC address the next byte picks: `byte % modulus` indexes `pool`, then `more` after it;
    /// a selector past both reads the MAC from the six bytes after it.
    wire::mac_address mac(std::span<const wire::mac_address> pool, std::span<const wire::mac_address> more,
                          unsigned modulus) noexcept {
        const std::size_t selector = byte() % modulus;
        if (selector < pool.size()) return pool[selector];
        if (selector - pool.size() < more.size()) return more[selector - pool.size()];
        return mac();
    }
    /// A frame: a big-endian 16-bit length, then that many bytes (cut to what is left), in a
    /// buffer of their own exact size, so ASan sees any read past its end; grown with zero bytes
    /// to `min_size` when shorter.
    std::vector<std::byte> frame(std::size_t min_size = 0) {
        const std::size_t high = byte();
        const std::size_t wanted = high << 8 | byte();
        const std::size_t len = std::min(wanted, size_ - std::min(pos_, size_));
        std::vector<std::byte> out(std::max(len, min_size));
        for (std::size_t i = 0; i < len; ++i) out[i] = std::byte{data_[pos_ + i]};
        pos_ += len;
        return out;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

} // namespace ankanet::fuzz
