// Fuzz target for ankanet::nat::basic_tcp_engine, the TCP translator's pure core, over the fake
// socket layer of the engine tests (tests/nat/tcp_support.hpp): no sockets, a manual clock.
//
// The input is a program; a missing byte reads as 0. Four guest connections (two VMs, two ports
// each, the first of each permitting SACK) to 192.168.64.1:8080. Each step is an opcode byte and its operands:
//
//   op % 11  operands                       what
//   0        c flags seqsel acksel w len [mss ws]  a well-formed segment (checksums right) from
//                                           connection c % 4: flags as given (12 bits from
//                                           `flags` and seqsel's top bits), sequence number per
//                                           seqsel (rcv_nxt, rcv_nxt +- small, or 4 more bytes),
//                                           ACK per acksel (snd_una, snd_nxt, snd_max, +- small,
//                                           or 4 more bytes), window w << 8 | w, len payload bytes
//                                           (each byte a function of its sequence number);
//                                           a SYN carries MSS and window scale options
//   1        len16 bytes                    the bytes as a frame from a third VM (parsed as is)
//   2        c e err                        socket event e % 3 for connection c's slot; err
//                                           selects none, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH
//   3        c n                            the host sends n * 37 bytes on connection c
//   4        c                              the host's end of file on connection c
//   5        c                              the host resets connection c (errors from now on)
//   6        v                              the clock moves on by v * 50 ms
//   7        r                              pump(room r % 20)
//   8        c s                            connection c's send buffer room becomes s * 300
//   9        b                              open() fails (b odd) or succeeds from now on; b >= 0xf0:
//                                           VM (b & 1) goes away (drop_vm); 0xe0 <= b < 0xf0: the
//                                           host accepts connection b % 4 as an inbound flow (a
//                                           port forward's: the guest is its server), its
//                                           adoption failing when b & 4
//   10       r                              end the burst: end_burst(room r % 4)
//
// Frames of ops 0 and 1 form a burst (kept alive, since the engine holds spans of guest data
// into them) that op 10 ends, or the eighth frame.
// After every step the target traps when an invariant breaks:
//  * per flow: snd_una <= snd_nxt <= snd_max (in sequence space), data in flight never exceeds
//    what the host socket still holds (plus SYN and FIN), and a flow that is not closing has an
//    open socket;
//  * a VM's half-open count never passes its limit, the table never passes its capacity;
//  * every emitted frame parses as IPv4 with a valid TCP or ICMP checksum;
//  * the guest's stream reaches the host socket intact: each byte written is the one the guest
//    sent at that sequence number (the byte before rcv_nxt is the last written), whatever was
//    lost, repeated, reordered or parked beyond a hole on the way;
//  * the bytes parked beyond holes stay within each VM's budget and the pool.
// At the end every connection is closed properly (the guest ACKs everything and sends its FIN,
// the host reaches end of file, time passes): then no flow and no parked byte may be left.
#include <ankanet/nat/tcp_engine.hpp>

#include "../tests/nat/tcp_support.hpp"
#include "support/input_reader.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

using namespace ankanet;
using namespace ankanet::nat;
namespace tcp = ankanet::wire::tcp;

#define FUZZ_CHECK(cond)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            std::fprintf(stderr, "nat_tcp_fuzz: invariant failed at line %d: %s\n", __LINE__, #cond); \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)

tcp_limits fuzz_limits() {
    tcp_limits l;
    l.capacity = 8;
    l.max_vms = 4;
    l.vm_flows = 3;
    l.vm_half_open = 2;
    l.max_retransmits = 4;
    l.hash_key = std::array<std::byte, 16>{};
    l.isn_seed = 7;
    l.reorder_bytes = 6 * ankanet::nat::tcp_reorder_store::chunk_size; // small: the budgets run out
    l.vm_reorder_bytes = 4 * ankanet::nat::tcp_reorder_store::chunk_size;
    return l;
}

/// The byte every guest sends at sequence number `seq`: so that the host side can tell where
/// each byte it got came from.
std::byte stream_byte(std::uint32_t seq) { return static_cast<std::byte>((seq * 131u) ^ (seq >> 8)); }

struct checking_sink {
    std::size_t frames = 0;
    void operator()(port_handle, wire::const_bytes bytes) {
        ++frames;
        const auto f = wire::parsed_frame::parse(bytes);
        FUZZ_CHECK(f.is_ipv4());
        auto ip = wire::ipv4::packet<wire::const_bytes>::checked(f.ip);
        FUZZ_CHECK(ip.has_value());
        FUZZ_CHECK(ip->verify_checksum());
        if (f.protocol == tcp::protocol_number) {
            FUZZ_CHECK(tcp::repr::parse(ip->payload(), f.ip_source, f.ip_destination).has_value());
        } else {
            FUZZ_CHECK(f.protocol == 1);
            FUZZ_CHECK(wire::icmp::repr::parse(ip->payload()).has_value());
        }
    }
};

struct world {
    tcp_limits limits = fuzz_limits();
    std::chrono::steady_clock::time_point now{std::chrono::hours{1}};
    basic_tcp_engine<test::fake_layer> engine{translation_config{}, limits, test::fake_layer{limits.capacity}, now};
    checking_sink out;
    std::array<test::guest, 4> guests{};
    std::array<port_handle, 2> vms{port_handle::make(0, 1), port_handle::make(1, 1)};
    port_handle raw_vm = port_handle::make(3, 1); ///< op 1's frames: no connection checked here
    std::array<std::size_t, 4> checked{}; ///< per connection: bytes of its socket's to_host checked

    world() {
        for (std::size_t i = 0; i < guests.size(); ++i) {
            guests[i].port = static_cast<std::uint16_t>(40000 + i);
            guests[i].mac = wire::mac_address{{0x52, 0x54, 0, 0, 0, static_cast<std::uint8_t>(2 + i / 2)}};
            guests[i].address = wire::ipv4_address{192, 168, 64, static_cast<std::uint8_t>(2 + i / 2)};
            guests[i].sack_permitted = i % 2 == 0; // one connection of each VM uses SACK
        }
    }

    port_handle vm_of(std::size_t c) const { return vms[c / 2]; }
    const tcp_flow_state* flow(std::size_t c) const {
        const auto& g = guests[c];
        return engine.find(vm_of(c).index(), g.address, g.port, g.remote, g.remote_port);
    }
    std::optional<std::uint32_t> slot(std::size_t c) const {
        const auto& g = guests[c];
        return engine.slot_of(vm_of(c).index(), g.address, g.port, g.remote, g.remote_port);
    }

    // The frames of the current burst: the engine may hold spans into them until end_burst().
    // Moving the inner vectors (when `burst` grows) keeps their buffers where they are.
    std::vector<std::vector<std::byte>> burst;

    void deliver(std::size_t c, const std::vector<std::byte>& frame) {
        burst.push_back(frame);
        const auto parsed = wire::parsed_frame::parse(burst.back());
        engine.guest_segment(vm_of(c), parsed, now,
                             [] { return std::optional<tcp_host_target>{tcp_host_target{wire::ipv4_address{127, 0, 0, 1}, 8080}}; },
                             out);
        if (burst.size() >= 8) end_burst(1000);
    }
    void end_burst(std::size_t room) {
        engine.end_burst(now, room, out);
        burst.clear();
    }

    void check() {
        FUZZ_CHECK(engine.size() <= limits.capacity);
        for (std::uint16_t vm = 0; vm < 2; ++vm) FUZZ_CHECK(engine.half_open(vm) <= limits.vm_half_open);
        for (std::size_t c = 0; c < guests.size(); ++c) {
            const tcp_flow_state* f = flow(c);
            if (f == nullptr) continue;
            FUZZ_CHECK(ankanet::nat::detail::seq_le(f->snd_una, f->snd_nxt));
            FUZZ_CHECK(ankanet::nat::detail::seq_le(f->snd_nxt, f->snd_max));
            const auto& sock = engine.sockets().sockets[*slot(c)];
            FUZZ_CHECK(f->snd_max - f->snd_una <= sock.rx.size() + 2);
            if (!f->has(tcp_flow_state::closing)) FUZZ_CHECK(sock.opened && !sock.closed);
            // The stream: the last byte written sits just before rcv_nxt (and the guest's FIN).
            if (sock.to_host.size() < checked[c]) checked[c] = 0; // a new socket in the slot
            const std::uint32_t end = f->rcv_nxt - (f->has(tcp_flow_state::fin_from_guest) ? 1u : 0u);
            for (std::size_t i = checked[c]; i < sock.to_host.size(); ++i) {
                FUZZ_CHECK(sock.to_host[i] == stream_byte(end - static_cast<std::uint32_t>(sock.to_host.size() - i)));
            }
            checked[c] = sock.to_host.size();
        }
        for (std::uint16_t vm = 0; vm < 4; ++vm) FUZZ_CHECK(engine.parked_bytes(vm) <= limits.vm_reorder_bytes);
        FUZZ_CHECK(engine.parked_bytes() <= limits.reorder_bytes);
    }
};

std::uint32_t pick_seq(ankanet::fuzz::input_reader& in, std::uint8_t sel, std::uint32_t base) {
    switch (sel % 4) {
    case 0: return base;
    case 1: return base + in.byte();
    case 2: return base - in.byte();
    default: return in.be32();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ankanet::fuzz::input_reader in{data, size};
    world w;
    std::size_t steps = 0;
    while (!in.done() && steps++ < 2000) {
        const std::uint8_t op = in.byte() % 11;
        switch (op) {
        case 0: {
            const std::size_t c = in.byte() % 4;
            const std::uint8_t flags_low = in.byte();
            const std::uint8_t seqsel = in.byte();
            const std::uint8_t acksel = in.byte();
            const std::uint8_t wbyte = in.byte();
            const std::size_t len = in.byte();
            auto& g = w.guests[c];
            const tcp_flow_state* f = w.flow(c);
            const tcp::flag_set flags{static_cast<std::uint16_t>(flags_low | ((seqsel & 0xc0u) << 2))};
            const std::uint32_t seq = pick_seq(in, seqsel, f ? f->rcv_nxt : g.seq);
            if (f) {
                const std::uint32_t bases[3] = {f->snd_una, f->snd_nxt, f->snd_max};
                g.ack = pick_seq(in, acksel >> 2, bases[(acksel & 3) % 3]);
            } else {
                g.ack = in.be32();
            }
            g.window = static_cast<std::uint16_t>(wbyte << 8 | wbyte);
            std::optional<std::uint16_t> mss;
            std::optional<std::uint8_t> ws;
            if (flags.syn()) {
                mss = static_cast<std::uint16_t>(in.byte() << 4);
                const std::uint8_t s = in.byte();
                if (s < 20) ws = s;
            }
            std::vector<std::byte> payload(len);
            for (std::size_t i = 0; i < len; ++i) payload[i] = stream_byte(seq + static_cast<std::uint32_t>(i));
            w.deliver(c, g.segment(flags, payload, seq, mss, ws));
            break;
        }
        case 1: {
            w.burst.push_back(in.frame());
            const auto parsed = wire::parsed_frame::parse(w.burst.back());
            if (parsed.is_ipv4() && parsed.protocol == tcp::protocol_number) {
                w.engine.guest_segment(w.raw_vm, parsed, w.now, [] { return std::optional<tcp_host_target>{}; }, w.out);
            }
            break;
        }
        case 2: {
            const std::size_t c = in.byte() % 4;
            const auto e = static_cast<tcp_socket_event>(in.byte() % 3);
            const std::uint8_t err = in.byte() % 4;
            static constexpr int errors[4] = {0, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH};
            const std::error_code ec = err ? std::error_code{errors[err], std::system_category()} : std::error_code{};
            if (const auto s = w.slot(c)) w.engine.socket_event(*s, e, ec);
            break;
        }
        case 3: {
            const std::size_t c = in.byte() % 4;
            const std::size_t n = std::size_t{in.byte()} * 37;
            if (const auto s = w.slot(c)) {
                auto& sock = w.engine.sockets().sockets[*s];
                if (!sock.eof) {
                    const auto more = test::bytes_of(n);
                    sock.rx.insert(sock.rx.end(), more.begin(), more.end());
                }
            }
            break;
        }
        case 4:
            if (const auto s = w.slot(in.byte() % 4)) w.engine.sockets().sockets[*s].eof = true;
            break;
        case 5:
            if (const auto s = w.slot(in.byte() % 4)) {
                w.engine.sockets().sockets[*s].error = std::make_error_code(std::errc::connection_reset);
            }
            break;
        case 6:
            w.now += std::chrono::milliseconds{50} * in.byte();
            w.engine.advance(w.now);
            break;
        case 7: w.engine.pump(w.now, in.byte() % 20, w.out); break;
        case 10: w.end_burst(in.byte() % 4); break;
        case 8:
            if (const auto s = w.slot(in.byte() % 4)) w.engine.sockets().sockets[*s].space = std::size_t{in.byte()} * 300;
            else in.byte();
            break;
        case 9: {
            const std::uint8_t b = in.byte();
            if (b >= 0xf0) {
                w.engine.drop_vm(w.guests[(b & 1u) * 2].mac);
                for (std::size_t c = (b & 1u) * 2; c < (b & 1u) * 2 + 2; ++c) FUZZ_CHECK(w.flow(c) == nullptr);
                break;
            }
            if (b >= 0xe0) {
                const std::size_t c = b % 4;
                const auto& g = w.guests[c];
                const bool existed = w.flow(c) != nullptr;
                const auto ec = w.engine.open_inbound(w.vm_of(c), g.mac, g.address, g.port, g.remote, g.remote_port, w.now,
                                                      [&](std::uint32_t slot) {
                                                          return w.engine.sockets().adopt(
                                                              slot, (b & 4) ? std::make_error_code(std::errc::bad_file_descriptor)
                                                                            : std::error_code{});
                                                      });
                if (existed) FUZZ_CHECK(ec == flow_errc::flow_exists); // never replaces a flow
                if (ec) FUZZ_CHECK(existed == (w.flow(c) != nullptr));  // a refusal leaves nothing behind
                break;
            }
            w.engine.sockets().open_error = (b & 1) ? std::make_error_code(std::errc::too_many_files_open)
                                                    : std::error_code{};
            break;
        }
        }
        w.check();
    }

    // Close everything properly: the host finishes, the guest ACKs all and sends its FIN.
    for (int round = 0; round < 40 && w.engine.size() != 0; ++round) {
        for (std::size_t c = 0; c < w.guests.size(); ++c) {
            if (const auto s = w.slot(c)) {
                auto& sock = w.engine.sockets().sockets[*s];
                sock.eof = true;
                sock.space = 1 << 16;
                w.engine.socket_event(*s, tcp_socket_event::connected, {});
                w.engine.socket_event(*s, tcp_socket_event::readable, {});
                w.engine.socket_event(*s, tcp_socket_event::writable, {});
            }
        }
        w.engine.pump(w.now, 1000, w.out);
        for (std::size_t c = 0; c < w.guests.size(); ++c) {
            const tcp_flow_state* f = w.flow(c);
            if (f == nullptr || !f->has(tcp_flow_state::syn_to_guest)) continue;
            auto& g = w.guests[c];
            if (!f->has(tcp_flow_state::syn_from_guest) && !f->has(tcp_flow_state::established)) {
                g.ack = f->snd_una + 1; // an inbound flow's SYN: the guest's server answers it
                w.deliver(c, g.segment(tcp::flag::syn | tcp::flag::ack, {}, g.seq));
                continue;
            }
            g.ack = f->snd_max;
            g.window = 0xffff;
            const bool fin = !f->has(tcp_flow_state::fin_from_guest) && f->has(tcp_flow_state::established);
            w.deliver(c, g.segment(fin ? tcp::flag::fin | tcp::flag::ack : tcp::flag_set{tcp::flag::ack}, {}, f->rcv_nxt));
        }
        w.end_burst(1000);
        w.check();
        w.now += std::chrono::seconds{1};
        w.engine.advance(w.now);
        w.engine.pump(w.now, 1000, w.out);
    }
    FUZZ_CHECK(w.engine.size() == 0);
    FUZZ_CHECK(w.engine.parked_bytes() == 0);
    return 0;
}
