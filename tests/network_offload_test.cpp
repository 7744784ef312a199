// basic_network's offload metadata (network.hpp, theory of operation 9): a service queues a 64 KiB
// TCPv4 super-frame with its virtio-net header; an emit that takes metadata gets it whole, one
// that takes bytes only gets the segments a NIC would have sent, and the glue hands it to the
// port's backend (segmented in software for a memory link, natively to a TAP with a virtio-net
// header). A guest's TCPv4 super-frame crosses the switch and the services whole; any other frame
// that comes in with metadata is made plain before them, or dropped.
#include <ankanet/network.hpp>

#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/clock.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/offload.hpp>
#include <ankanet/wire/tcp.hpp>
#include <ankanet/wire/udp.hpp>

#include "support/netns.hpp"
#include "support/skip.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace ankanet;
using byte_vector = std::vector<std::byte>;

namespace {

const mac_address vm_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address other_mac = *mac_address::parse("52:54:00:12:34:57");
constexpr ipv4_address host_ip{93, 184, 216, 34};
constexpr ipv4_address guest_ip{192, 168, 64, 2};
constexpr std::uint16_t trigger_ethertype = 0x88b5; // IEEE local experimental: "send me the super-frame"
constexpr std::uint16_t hello_ethertype = 0x88b6;
constexpr std::uint16_t mss = 1448;
constexpr std::size_t payload_len = 65000;
constexpr std::uint32_t first_seq = 0xfffff000; // the segments' sequence numbers wrap

/// A TCPv4 super-frame from `source` to `destination` of `payload` bytes with a partial checksum
/// (as a driver leaves it for the NIC), and its offload metadata.
struct super_frame {
    byte_vector bytes;
    wire::offload meta;
    std::size_t headers = 0;
};

super_frame make_super_frame(mac_address source, mac_address destination, std::size_t payload, std::uint16_t segment) {
    const wire::ethernet::repr eth{source, destination, wire::ethernet::ethertype::ipv4, std::nullopt};
    wire::tcp::repr seg;
    seg.source_port = 443;
    seg.destination_port = 40000;
    seg.seq_number = first_seq;
    seg.ack_number = 77;
    seg.flags = wire::tcp::flag_set{wire::tcp::flag::ack} | wire::tcp::flag::psh;
    seg.window = 1000;
    seg.payload_len = payload;
    wire::ipv4::repr ip;
    ip.source = host_ip;
    ip.destination = guest_ip;
    ip.protocol = wire::ipv4::protocol::tcp;
    ip.payload_len = seg.buffer_len() + payload;
    const std::size_t l4 = eth.buffer_len() + ip.buffer_len();
    super_frame f;
    f.headers = l4 + seg.buffer_len();
    f.bytes.resize(f.headers + payload);
    for (std::size_t i = 0; i < payload; ++i) f.bytes[f.headers + i] = std::byte(static_cast<unsigned char>(i % 251));
    REQUIRE_FALSE(eth.emit(f.bytes));
    REQUIRE_FALSE(ip.emit(wire::mutable_bytes{f.bytes}.subspan(eth.buffer_len())));
    REQUIRE_FALSE(seg.emit(wire::mutable_bytes{f.bytes}.subspan(l4), host_ip, guest_ip));
    const auto length = static_cast<std::uint16_t>(f.bytes.size() - l4);
    wire::store_be16(f.bytes, l4 + wire::tcp::field::checksum,
                     wire::checksum::ipv4_pseudo_header(host_ip, guest_ip, wire::tcp::protocol_number, length).sum());
    f.meta = wire::offload::tcpv4_gso(l4, f.headers, segment);
    return f;
}

/// Checks that `frames` are the super-frame `original` cut as a NIC cuts it: plain frames the MTU
/// allows, valid IPv4 and TCP checksums, consecutive sequence numbers, PSH on the last only, and
/// the payload back whole.
void check_segments(const std::vector<byte_vector>& frames, const super_frame& original) {
    REQUIRE(frames.size() == (payload_len + mss - 1) / mss);
    byte_vector joined;
    std::uint32_t seq = first_seq;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const auto& frame = frames[i];
        CHECK(frame.size() <= backend::max_frame_len(backend::default_mtu));
        const auto parsed = wire::parsed_frame::parse(frame);
        REQUIRE(parsed.is_ipv4());
        const wire::ipv4::packet<wire::const_bytes> ip{wire::const_bytes{frame}.subspan(wire::ethernet::header_len)};
        REQUIRE_FALSE(ip.check_len());
        CHECK(ip.verify_checksum());
        const wire::tcp::packet<wire::const_bytes> seg{ip.payload()};
        REQUIRE_FALSE(seg.check_len());
        CHECK(seg.verify_checksum(host_ip, guest_ip));
        CHECK(seg.seq_number() == seq);
        CHECK(seg.flags().has(wire::tcp::flag::psh) == (i + 1 == frames.size()));
        seq += static_cast<std::uint32_t>(seg.payload().size());
        joined.insert(joined.end(), seg.payload().begin(), seg.payload().end());
    }
    CHECK(joined.size() == payload_len);
    CHECK(std::equal(joined.begin(), joined.end(), original.bytes.begin() + static_cast<std::ptrdiff_t>(original.headers),
                     original.bytes.end()));
}

/// How the test service queues its super-frame.
enum class reply_way { answer, switched, send_to };

/// What the test service saw, kept outside it (the network owns the service).
struct offload_log {
    std::size_t triggers = 0;
    std::vector<byte_vector> inspected; // every IPv4 frame a VM sent, as the services saw it
    std::vector<wire::offload> offloads; // and the metadata the context gave with each
};

/// Answers a frame of trigger_ethertype for the gateway with `count` copies of a 64 KiB TCPv4
/// super-frame queued with its offload metadata, and records every IPv4 frame VMs send.
struct offload_service {
    super_frame reply;
    reply_way way = reply_way::answer;
    std::size_t count = 1;
    bool trigger_on_arp = false; ///< an ARP frame for the gateway triggers it too
    std::shared_ptr<offload_log> log = std::make_shared<offload_log>();

    template <class Ctx>
    inspection inspect(const wire::parsed_frame& frame, Ctx& ctx) {
        if (frame.is_ipv4()) {
            log->inspected.emplace_back(frame.bytes.begin(), frame.bytes.end());
            log->offloads.push_back(ctx.offload());
        }
        return inspection::pass;
    }

    template <class Ctx>
    bool handle(const wire::parsed_frame& frame, Ctx& ctx) {
        if (!frame.valid) return false;
        if (frame.ethertype != trigger_ethertype && !(trigger_on_arp && frame.is_arp())) return false;
        ++log->triggers;
        for (std::size_t i = 0; i < count; ++i) {
            switch (way) {
            case reply_way::answer: ctx.answer(reply.bytes, reply.meta); break;
            case reply_way::switched: ctx(reply.bytes, reply.meta); break;
            case reply_way::send_to: ctx.send_to(*ctx.port(), reply.bytes, reply.meta); break;
            }
        }
        return true;
    }
};
static_assert(gateway_service<offload_service>);

struct offload_traits : default_network_traits {
    using clock_type = manual_clock;
};
using offload_network = basic_network<offload_traits, offload_service>;

offload_service make_service(reply_way way = reply_way::answer, std::size_t count = 1) {
    offload_service s;
    s.reply = make_super_frame(default_gateway_mac, vm_mac, payload_len, mss);
    s.way = way;
    s.count = count;
    return s;
}

byte_vector trigger_frame() {
    byte_vector frame(wire::ethernet::min_frame_len);
    REQUIRE_FALSE(wire::ethernet::repr{vm_mac, default_gateway_mac, trigger_ethertype, {}}.emit(frame));
    return frame;
}

/// An emit that takes metadata: records both kinds of call.
struct offload_recorder {
    struct sent {
        port_handle to;
        byte_vector bytes;
        std::optional<wire::offload> meta; // none: the two-argument call
    };
    std::vector<sent>* out;
    void operator()(port_handle to, wire::const_bytes frame) const { out->push_back({to, byte_vector(frame.begin(), frame.end()), std::nullopt}); }
    void operator()(port_handle to, wire::const_bytes frame, const wire::offload& meta) const {
        out->push_back({to, byte_vector(frame.begin(), frame.end()), meta});
    }
};
static_assert(offload_emitter<offload_recorder>);

} // namespace

TEST_CASE("network offload: an emit that takes metadata gets the one super-frame with it") {
    for (const reply_way way : {reply_way::answer, reply_way::switched, reply_way::send_to}) {
        auto service = make_service(way);
        const super_frame reply = service.reply;
        offload_network net{network_config{}, std::move(service)};
        const auto vm = net.add_port("vm", port_mac::custom(vm_mac));
        REQUIRE(vm);
        std::vector<offload_recorder::sent> out;
        net.input(*vm, trigger_frame(), net.clock().now(), offload_recorder{&out});

        INFO("way " << static_cast<int>(way));
        REQUIRE(out.size() == 1);
        CHECK(out[0].to == *vm);
        REQUIRE(out[0].meta);
        CHECK(*out[0].meta == reply.meta);
        CHECK(out[0].bytes == reply.bytes);
        CHECK(net.stats().replies == 1);
        CHECK(net.stats().replies_dropped == 0);
        CHECK(net.stats().offload_segmented == 0);
        CHECK(net.stats(*vm)->frames_out == 1);
    }
}

TEST_CASE("network offload: an emit that takes bytes only gets the super-frame cut and finished in software") {
    for (const reply_way way : {reply_way::answer, reply_way::switched, reply_way::send_to}) {
        auto service = make_service(way);
        const super_frame reply = service.reply;
        offload_network net{network_config{}, std::move(service)};
        const auto vm = net.add_port("vm", port_mac::custom(vm_mac));
        REQUIRE(vm);
        std::vector<byte_vector> frames;
        net.input(*vm, trigger_frame(), net.clock().now(), [&](port_handle to, wire::const_bytes frame) {
            CHECK(to == *vm);
            frames.emplace_back(frame.begin(), frame.end());
        });
        INFO("way " << static_cast<int>(way));
        check_segments(frames, reply);
        CHECK(net.stats().replies == 1);
        CHECK(net.stats().offload_segmented == 1);
        CHECK(net.stats().offload_errors == 0);
    }
}

TEST_CASE("network offload: several super-frames and plain replies share one burst's queue") {
    // Four super-frames (260 KB) in a queue made for 16 frames of 1518 bytes: its storage grows
    // once, and what was queued before it grew is intact.
    auto service = make_service(reply_way::answer, 4);
    const super_frame reply = service.reply;
    offload_network net{network_config{}, std::move(service)};
    const auto vm = net.add_port("vm", port_mac::custom(vm_mac));
    REQUIRE(vm);
    std::vector<offload_recorder::sent> out;
    for (int round = 0; round < 3; ++round) net.input(*vm, trigger_frame(), net.clock().now(), offload_recorder{&out});
    REQUIRE(out.size() == 12);
    for (const auto& sent : out) {
        REQUIRE(sent.meta);
        CHECK(sent.bytes == reply.bytes);
    }
    CHECK(net.stats().replies == 12);
    CHECK(net.stats().replies_dropped == 0);
}

TEST_CASE("network offload: metadata that does not hold together, and plain frames too long, are dropped") {
    offload_service service = make_service();
    service.reply.meta.gso_size = 0; // GSO without a segment size: validate() refuses it
    offload_network net{network_config{}, std::move(service)};
    const auto vm = net.add_port("vm", port_mac::custom(vm_mac));
    REQUIRE(vm);
    std::vector<offload_recorder::sent> out;
    net.input(*vm, trigger_frame(), net.clock().now(), offload_recorder{&out});
    CHECK(out.empty());
    CHECK(net.stats().replies_dropped == 1);

    offload_service plain = make_service();
    plain.reply.meta = {}; // the same 64 KiB, as a plain frame: longer than the MTU allows
    offload_network net2{network_config{}, std::move(plain)};
    const auto vm2 = net2.add_port("vm", port_mac::custom(vm_mac));
    REQUIRE(vm2);
    net2.input(*vm2, trigger_frame(), net2.clock().now(), offload_recorder{&out});
    CHECK(out.empty());
    CHECK(net2.stats().replies_dropped == 1);
}

TEST_CASE("network offload: a memory backend's port gets the super-frame as segments") {
    boost::asio::io_context io;
    auto service = make_service();
    const super_frame reply = service.reply;
    offload_network net{network_config{}, std::move(service)};
    auto [guest, ours] = backend::make_memory_link(io.get_executor(), backend::default_mtu, 256);
    const auto vm = net.attach("vm", std::move(ours), port_mac::custom(vm_mac));
    REQUIRE(vm);
    REQUIRE_FALSE(guest.send(trigger_frame()));
    io.restart();
    while (io.poll_one() != 0) {}

    std::vector<byte_vector> frames;
    byte_vector buffer(backend::max_frame_len(backend::default_mtu));
    for (auto got = guest.try_receive(buffer); got; got = guest.try_receive(buffer)) frames.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*got));
    check_segments(frames, reply);
    // The glue passed the metadata on; the port's backend (send_offloaded) cut it, not the network.
    CHECK(net.stats().offload_segmented == 0);
    CHECK(net.stats().replies == 1);

    net.stop();
    io.restart();
    io.run();
    CHECK(net.port_count() == 0);
}

/// A network with two VMs, "vm" and "other"; the other one has spoken, so the switch knows it and a
/// frame for it is not flooded.
struct two_vms {
    offload_network net{network_config{}, make_service()};
    std::shared_ptr<offload_log> log = net.service<offload_service>().log;
    port_handle vm = added("vm", vm_mac);
    port_handle other = added("other", other_mac);

    two_vms() {
        std::vector<offload_recorder::sent> ignored;
        byte_vector hello(wire::ethernet::min_frame_len);
        REQUIRE_FALSE(wire::ethernet::repr{other_mac, vm_mac, hello_ethertype, {}}.emit(hello));
        net.input(other, hello, net.clock().now(), offload_recorder{&ignored});
    }
    port_handle added(const char* name, mac_address mac) {
        const auto port = net.add_port(name, port_mac::custom(mac));
        REQUIRE(port);
        return *port;
    }
};

/// Collects what a bytes-only emit is given.
struct byte_recorder {
    std::vector<byte_vector>* frames;
    void operator()(port_handle, wire::const_bytes frame) const { frames->emplace_back(frame.begin(), frame.end()); }
};

TEST_CASE_METHOD(two_vms, "network offload: a guest's TCPv4 super-frame crosses the switch and the services whole") {

    // As a TAP with TSO4 hands it over: 65 000 bytes of payload, the TCP checksum left to the NIC.
    const super_frame sent = make_super_frame(vm_mac, other_mac, payload_len, mss);
    std::vector<offload_recorder::sent> out;
    net.input(vm, sent.bytes, sent.meta, net.clock().now(), offload_recorder{&out});
    REQUIRE(out.size() == 1); // one frame, one call: the other VM's TAP cuts it, or its guest takes it whole
    CHECK(out[0].to == other);
    REQUIRE(out[0].meta);
    CHECK(*out[0].meta == sent.meta);
    CHECK(out[0].bytes == sent.bytes);
    // The services saw it once, as it is, and were told its checksum is the NIC's to finish.
    REQUIRE(log->inspected.size() == 1);
    CHECK(log->inspected[0] == sent.bytes);
    REQUIRE(log->offloads.size() == 1);
    CHECK(log->offloads[0] == sent.meta);
    CHECK(net.stats().offload_whole == 1);
    CHECK(net.stats().offload_segmented == 0);
    CHECK(net.stats(vm)->frames_in == 1);

    // An emit that takes bytes only gets the segments a NIC would have sent.
    std::vector<byte_vector> frames;
    net.input(vm, sent.bytes, sent.meta, net.clock().now(), byte_recorder{&frames});
    check_segments(frames, sent);
    CHECK(net.stats().offload_whole == 2);
    CHECK(net.stats().offload_segmented == 1);
}

TEST_CASE_METHOD(two_vms, "network offload: other frames with metadata are made plain before the switch and the services, or dropped") {
    std::vector<offload_recorder::sent> out;

    SECTION("a UDP datagram whose checksum the guest left to its NIC") {
        const wire::ethernet::repr eth{vm_mac, other_mac, wire::ethernet::ethertype::ipv4, std::nullopt};
        wire::udp::repr udp;
        udp.source_port = 5353;
        udp.destination_port = 9;
        udp.payload_len = 100;
        wire::ipv4::repr ip;
        ip.source = guest_ip;
        ip.destination = ipv4_address{192, 168, 64, 3};
        ip.protocol = wire::ipv4::protocol::udp;
        ip.payload_len = udp.buffer_len() + udp.payload_len;
        const std::size_t l4 = eth.buffer_len() + ip.buffer_len();
        byte_vector frame(l4 + ip.payload_len, std::byte{0x5a});
        REQUIRE_FALSE(eth.emit(frame));
        REQUIRE_FALSE(ip.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len())));
        REQUIRE_FALSE(udp.emit(wire::mutable_bytes{frame}.subspan(l4), ip.source, ip.destination));
        wire::store_be16(frame, l4 + wire::udp::field::checksum,
                         wire::checksum::ipv4_pseudo_header(ip.source, ip.destination, wire::ipv4::protocol::udp,
                                                            static_cast<std::uint16_t>(ip.payload_len))
                             .sum());
        wire::offload meta;
        meta.needs_csum = true;
        meta.csum_start = static_cast<std::uint16_t>(l4);
        meta.csum_offset = wire::udp::field::checksum;

        net.input(vm, frame, meta, net.clock().now(), offload_recorder{&out});
        REQUIRE(out.size() == 1);
        CHECK_FALSE(out[0].meta);
        REQUIRE(log->inspected.size() == 1);
        CHECK(log->offloads[0].is_plain());
        const wire::ipv4::packet<wire::const_bytes> seen{wire::const_bytes{out[0].bytes}.subspan(wire::ethernet::header_len)};
        REQUIRE_FALSE(seen.check_len());
        CHECK(wire::udp::packet<wire::const_bytes>{seen.payload()}.verify_checksum(ip.source, ip.destination));
        CHECK(net.stats().offload_segmented == 1);
        CHECK(net.stats().offload_whole == 0);
    }

    SECTION("a super-frame whose segments the MTU could not carry") {
        // 9000-byte segments on a 1500 network: cut in software, and each piece is then too long.
        const super_frame sent = make_super_frame(vm_mac, other_mac, payload_len, 9000);
        net.input(vm, sent.bytes, sent.meta, net.clock().now(), offload_recorder{&out});
        CHECK(out.empty());
        CHECK(log->inspected.empty());
        CHECK(net.stats().offload_whole == 0);
        CHECK(net.stats(vm)->dropped_bad_size == (payload_len + 8999) / 9000);
    }

    SECTION("metadata the network cannot apply") {
        // GSO on a frame that is not TCP.
        super_frame bad = make_super_frame(vm_mac, other_mac, payload_len, mss);
        bad.bytes[wire::ethernet::header_len + wire::ipv4::field::protocol] = std::byte{17};
        net.input(vm, bad.bytes, bad.meta, net.clock().now(), offload_recorder{&out});
        CHECK(out.empty());
        CHECK(log->inspected.empty());
        CHECK(net.stats(vm)->dropped_bad_offload == 1);
        CHECK(net.stats().dropped_bad_offload == 1);
    }

    SECTION("all-clear metadata is the plain path") {
        byte_vector hello(wire::ethernet::min_frame_len);
        REQUIRE_FALSE(wire::ethernet::repr{vm_mac, other_mac, hello_ethertype, {}}.emit(hello));
        net.input(vm, hello, wire::offload{}, net.clock().now(), offload_recorder{&out});
        CHECK(out.size() == 1);
        CHECK(net.stats().offload_segmented == 0);
        CHECK(net.stats().offload_whole == 0);
    }
}

#if defined(__linux__)
TEST_CASE("network offload: a TAP opened with a virtio-net header gets the super-frame natively") {
    const std::string missing = test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), "this test needs " << missing);
    test::scoped_netns ns;
    boost::asio::io_context io;
    const auto quiet = test::run_in(ns, "[ ! -d /proc/sys/net/ipv6 ] || { echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 "
                                        "&& echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; }");
    REQUIRE(quiet.status == 0);
    backend::tap_options options;
    options.vnet_header = true;
    options.checksum_offload = true;
    options.tso4 = true;
    options.mac = vm_mac;
    options.set_interface_mtu = true;
    auto tap = backend::tap_device::open_in_netns(io.get_executor(), ns.path(), "eth0", options);
    INFO((tap ? std::string{} : tap.error().message()));
    REQUIRE(tap);
    const auto up = test::run_in(ns, "ip addr add 192.168.64.2/24 dev eth0 && ip link set eth0 up");
    INFO(up.output);
    REQUIRE(up.status == 0);
    // What the guest's interface received: the tun driver counts each write as one packet.
    const auto counter = [&](const char* name) -> std::uint64_t {
        const auto got = test::run_in(ns, std::string{"cat /sys/class/net/eth0/statistics/"} + name);
        REQUIRE(got.status == 0);
        return std::stoull(got.output);
    };

    // A port made for such a TAP reads frames of up to 64 KiB, 15 to a burst (a second TAP shows it).
    static_assert(backend::offload_receiver<backend::tap_device>);
    CHECK(backend::port_receive_len(*tap) == wire::offload::max_frame_len);
    {
        auto probe = backend::tap_device::open_in_netns(io.get_executor(), ns.path(), "probe0", options);
        REQUIRE(probe);
        CHECK(backend::make_port("probe", std::move(*probe))->burst_capacity() == 15);
    }

    auto service = make_service(reply_way::send_to);
    service.trigger_on_arp = true;
    const super_frame reply = service.reply;
    offload_network net{network_config{}, std::move(service)};
    const auto log = net.service<offload_service>().log;
    const auto vm = net.attach("vm", std::move(*tap), port_mac::custom(vm_mac));
    REQUIRE(vm);
    io.restart();
    while (io.poll_one() != 0) {}
    const std::uint64_t rx_packets = counter("rx_packets");
    const std::uint64_t rx_bytes = counter("rx_bytes");

    // The guest asks for the gateway's MAC (nobody answers); each ARP request the glue receives
    // makes the service send the super-frame, which the glue hands to the TAP with its header.
    (void)test::run_in(ns, "ping -c 1 -W 1 192.168.64.1");
    for (int turn = 0; turn < 50 && log->triggers == 0; ++turn) {
        io.restart();
        io.run_for(std::chrono::milliseconds{20});
    }
    REQUIRE(log->triggers >= 1);
    const std::uint64_t packets = counter("rx_packets") - rx_packets;
    const std::uint64_t bytes = counter("rx_bytes") - rx_bytes;
    CHECK(packets == log->triggers);                                  // one write per super-frame, not 45
    CHECK(bytes == log->triggers * reply.bytes.size());
    CHECK(net.stats().offload_segmented == 0);
    CHECK(net.stats().replies == log->triggers);

    net.stop();
    io.restart();
    io.run();
    CHECK(net.port_count() == 0);
}
#endif
