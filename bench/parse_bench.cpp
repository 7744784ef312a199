// Parsing a TCP/IPv4/Ethernet frame: what the NAT does for every frame a guest sends.
//   bm_parse_frame/P     full reprs, both checksums verified (IPv4 header, TCP over P payload bytes)
//   bm_view_frame/P      views only: check_len on each layer and read the 5-tuple, no checksum —
//                        the cost of classifying a frame before a flow lookup
// Frames are built once by the wire layer's own emitters: a SYN-like header with MSS, SACK-permitted,
// timestamps and window scale (Linux's layout), carrying P bytes of payload.
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/tcp.hpp>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <vector>

namespace {

using namespace ankanet;
using namespace ankanet::wire;

constexpr ipv4_address guest{192, 168, 64, 2};
constexpr ipv4_address gateway{192, 168, 64, 1};

std::vector<std::byte> make_frame(std::size_t payload) {
    tcp::repr segment;
    segment.source_port = 40080;
    segment.destination_port = 8080;
    segment.seq_number = 0x12345678;
    segment.ack_number = 0x9abcdef0;
    segment.flags = tcp::flag_set{tcp::flag::ack}.set(tcp::flag::psh);
    segment.window = 502;
    segment.mss = 1460;
    segment.sack_permitted = true;
    segment.timestamps = tcp::timestamp_values{232008614, 1};
    segment.window_scale = 7;
    segment.payload_len = payload;

    ipv4::repr ip;
    ip.source = guest;
    ip.destination = gateway;
    ip.protocol = ipv4::protocol::tcp;
    ip.payload_len = segment.buffer_len() + payload; // buffer_len is the header; the payload follows
    const ethernet::repr eth{*mac_address::parse("52:54:00:12:34:56"), *mac_address::parse("02:61:6e:6b:61:01"),
                             ethernet::ethertype::ipv4, std::nullopt};

    std::vector<std::byte> frame(eth.buffer_len() + ip.buffer_len() + ip.payload_len);
    const auto at_ip = mutable_bytes{frame}.subspan(eth.buffer_len());
    const auto at_tcp = at_ip.subspan(ip.buffer_len());
    for (std::size_t i = 0; i < payload; ++i) at_tcp[segment.buffer_len() + i] = static_cast<std::byte>(i * 7);
    if (eth.emit(frame) || ip.emit(at_ip) || segment.emit(at_tcp, guest, gateway)) std::abort();
    return frame;
}

void bm_parse_frame(benchmark::State& state) {
    const auto frame = make_frame(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        benchmark::DoNotOptimize(frame.data());
        const const_bytes bytes{frame};
        const auto eth = ethernet::repr::parse(bytes);
        const auto ip_bytes = bytes.subspan(eth->buffer_len());
        const auto ip = ipv4::repr::parse(ip_bytes);
        const ipv4::packet<const_bytes> datagram{ip_bytes};
        const auto segment = tcp::repr::parse(datagram.payload(), ip->source, ip->destination);
        if (!segment) std::abort();
        benchmark::DoNotOptimize(segment->seq_number);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}

void bm_view_frame(benchmark::State& state) {
    const auto frame = make_frame(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        benchmark::DoNotOptimize(frame.data());
        const auto eth = ethernet::packet<const_bytes>::checked(frame);
        const auto ip = ipv4::packet<const_bytes>::checked(eth->payload());
        const auto segment = tcp::packet<const_bytes>::checked(ip->payload());
        if (!segment) std::abort();
        auto key = std::uint64_t{ip->source().to_u32()} ^ (std::uint64_t{ip->destination().to_u32()} << 32) ^
                   segment->source_port() ^ (std::uint64_t{segment->destination_port()} << 16) ^ ip->protocol();
        benchmark::DoNotOptimize(key);
    }
    state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(bm_parse_frame)->Arg(0)->Arg(1460);
BENCHMARK(bm_view_frame)->Arg(0)->Arg(1460);
