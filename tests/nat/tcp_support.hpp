// Test support for the TCP translator: a fake socket layer (no sockets: queues and switches the
// test sets), a scripted guest that builds frames, and a parser for what the engine emits.
#pragma once

#include <ankanet/nat/tcp_engine.hpp>
#include <ankanet/wire/frame.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>
#include <vector>

namespace ankanet::nat::test {

/// One fake host socket.
struct fake_socket {
    bool opened = false;
    wire::ipv4_address address;
    std::uint16_t port = 0;
    std::uint16_t mss = 0;
    std::vector<std::byte> to_host;    ///< what the guest's data became
    std::size_t sends = 0;             ///< send() calls (gather writes)
    std::size_t space = 1 << 20;       ///< send buffer room: send() takes at most this, then blocks
    std::vector<std::byte> rx;         ///< what the host sent, not yet discarded
    std::size_t discarded = 0;
    bool eof = false;
    std::error_code error;
    bool shut_write = false;
    bool closed = false;
    bool reset = false;
    bool want_read = false;
    bool want_write = false;
};

/// A tcp_socket_layer over fake_sockets, one per slot.
class fake_layer {
public:
    explicit fake_layer(std::size_t slots = 64) : sockets(slots) {}

    std::error_code open(std::uint32_t slot, wire::ipv4_address address, std::uint16_t port, std::uint16_t mss) {
        if (open_error) return open_error;
        sockets[slot] = fake_socket{};
        sockets[slot].opened = true;
        sockets[slot].address = address;
        sockets[slot].port = port;
        sockets[slot].mss = mss;
        sockets[slot].space = default_space;
        ++opens;
        return {};
    }
    /// Takes a connection the host accepted for `slot` (an inbound flow), or fails with `error`.
    std::error_code adopt(std::uint32_t slot, std::error_code error = {}) {
        if (error) return error;
        sockets[slot] = fake_socket{};
        sockets[slot].opened = true;
        sockets[slot].space = default_space;
        return {};
    }
    tcp_send_result send(std::uint32_t slot, std::span<const wire::const_bytes> pieces) {
        fake_socket& s = sockets[slot];
        ++s.sends;
        if (s.error) return {0, s.error};
        std::size_t taken = 0;
        for (const auto& data : pieces) {
            const std::size_t n = std::min(data.size(), s.space);
            s.to_host.insert(s.to_host.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
            s.space -= n;
            taken += n;
            if (n < data.size()) break;
        }
        return {taken, {}};
    }
    tcp_peek_result peek(std::uint32_t slot, std::size_t offset, wire::mutable_bytes out) {
        fake_socket& s = sockets[slot];
        if (s.error) return {0, false, s.error};
        if (offset >= s.rx.size()) return {0, s.eof, {}};
        const std::size_t n = std::min(out.size(), s.rx.size() - offset);
        std::copy_n(s.rx.begin() + static_cast<std::ptrdiff_t>(offset), n, out.begin());
        return {n, false, {}};
    }
    std::error_code discard(std::uint32_t slot, std::size_t n) {
        fake_socket& s = sockets[slot];
        if (n > s.rx.size()) return std::make_error_code(std::errc::invalid_argument);
        s.rx.erase(s.rx.begin(), s.rx.begin() + static_cast<std::ptrdiff_t>(n));
        s.discarded += n;
        return {};
    }
    void shutdown_write(std::uint32_t slot) { sockets[slot].shut_write = true; }
    void close(std::uint32_t slot, bool reset) {
        sockets[slot].closed = true;
        sockets[slot].reset = reset;
        ++closes;
    }
    void want_readable(std::uint32_t slot) { sockets[slot].want_read = true; }
    void want_writable(std::uint32_t slot) { sockets[slot].want_write = true; }
    std::size_t send_space(std::uint32_t slot) const { return sockets[slot].space; }
    std::size_t max_peek_offset() const { return peek_limit; }

    std::vector<fake_socket> sockets;
    std::error_code open_error;
    std::size_t default_space = 1 << 20;
    std::size_t peek_limit = std::size_t{1} << 30;
    std::size_t opens = 0;
    std::size_t closes = 0;
};
static_assert(tcp_socket_layer<fake_layer>);

/// A frame the engine emitted, parsed.
struct out_frame {
    port_handle to;
    std::vector<std::byte> bytes;
    wire::parsed_frame frame() const { return wire::parsed_frame::parse(bytes); }
    /// The TCP segment, if it is one (checksum verified).
    std::optional<wire::tcp::repr> tcp() const {
        const auto f = frame();
        if (!f.is_ipv4() || f.protocol != wire::tcp::protocol_number) return std::nullopt;
        auto ip = wire::ipv4::packet<wire::const_bytes>::checked(f.ip);
        if (!ip) return std::nullopt;
        auto r = wire::tcp::repr::parse(ip->payload(), f.ip_source, f.ip_destination);
        if (!r) return std::nullopt;
        return *r;
    }
    std::vector<std::byte> payload() const {
        const auto f = frame();
        auto ip = wire::ipv4::packet<wire::const_bytes>::checked(f.ip);
        const auto p = wire::tcp::packet<wire::const_bytes>{ip->payload()}.payload();
        return {p.begin(), p.end()};
    }
};

/// Collects frames: the `out` of guest_segment and pump.
struct sink {
    std::vector<out_frame> frames;
    void operator()(port_handle to, wire::const_bytes bytes) { frames.push_back({to, {bytes.begin(), bytes.end()}}); }
    std::size_t size() const { return frames.size(); }
    void clear() { frames.clear(); }
    /// The TCP segments, in order.
    std::vector<wire::tcp::repr> segments() const {
        std::vector<wire::tcp::repr> all;
        for (const auto& f : frames) {
            if (auto t = f.tcp()) all.push_back(*t);
        }
        return all;
    }
};

/// A scripted guest: builds the frames one TCP connection of a VM sends.
struct guest {
    wire::mac_address mac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}};
    wire::mac_address gateway_mac = default_gateway_mac;
    wire::ipv4_address address{192, 168, 64, 2};
    wire::ipv4_address remote{192, 168, 64, 1};
    std::uint16_t port = 40000;
    std::uint16_t remote_port = 8080;
    std::uint32_t seq = 1000;  ///< next sequence number the guest sends
    std::uint32_t ack = 0;     ///< what it ACKs
    std::uint16_t window = 65535;
    std::optional<wire::tcp::timestamp_values> timestamps; ///< sent with every segment when set
    bool sack_permitted = false; ///< offered on its SYN
    std::vector<std::byte> buffer;

    std::vector<std::byte> segment(wire::tcp::flag_set flags, wire::const_bytes payload = {},
                                   std::optional<std::uint32_t> seq_override = std::nullopt,
                                   std::optional<std::uint16_t> mss = std::nullopt,
                                   std::optional<std::uint8_t> wscale = std::nullopt) const {
        wire::tcp::repr t;
        t.source_port = port;
        t.destination_port = remote_port;
        t.seq_number = seq_override ? *seq_override : seq;
        t.ack_number = flags.ack() ? ack : 0;
        t.flags = flags;
        t.window = window;
        t.mss = mss;
        t.window_scale = wscale;
        t.timestamps = timestamps;
        t.sack_permitted = sack_permitted && flags.syn();
        t.payload_len = payload.size();
        const std::size_t l4 = t.buffer_len() + payload.size();
        std::vector<std::byte> frame(guest_headers_len + l4);
        write_guest_headers(frame, mac, gateway_mac, address, remote, wire::tcp::protocol_number, l4);
        std::copy(payload.begin(), payload.end(), frame.begin() + static_cast<std::ptrdiff_t>(guest_headers_len + t.buffer_len()));
        (void)t.emit(wire::mutable_bytes{frame}.subspan(guest_headers_len), address, remote);
        return frame;
    }
};

/// `data` cut into ACK segments of `size` bytes from `g.seq` on, in order (a burst's frames).
inline std::vector<std::vector<std::byte>> data_segments(const guest& g, wire::const_bytes data, std::size_t size) {
    std::vector<std::vector<std::byte>> frames;
    for (std::size_t at = 0; at < data.size(); at += size) {
        frames.push_back(g.segment(wire::tcp::flag::ack, data.subspan(at, std::min(size, data.size() - at)),
                                   g.seq + static_cast<std::uint32_t>(at)));
    }
    return frames;
}

inline std::vector<std::byte> bytes_of(std::size_t n, std::uint8_t start = 0) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::byte{static_cast<std::uint8_t>(start + i * 7)};
    return v;
}

} // namespace ankanet::nat::test
