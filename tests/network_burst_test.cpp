// basic_network's bursts (network.hpp, theory of operation 8): a service may keep spans into the
// frames inspect() is handed until the end_burst that follows, which the network calls after each
// burst a port's receive loop delivers, after each input(), and on end_burst(now, emit); what a
// service answers in end_burst reaches the VMs.
#include <ankanet/network.hpp>

#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/clock.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

using namespace ankanet;
using byte_vector = std::vector<std::byte>;

namespace {

const mac_address vm_mac = *mac_address::parse("52:54:00:12:34:56");
constexpr std::uint16_t test_ethertype = 0x88b5; // IEEE local experimental
constexpr std::uint16_t reply_ethertype = 0x88b6;

/// A frame from the VM to the gateway carrying `sequence` after its Ethernet header, `size` bytes,
/// filled after that with the sequence's low byte.
byte_vector numbered_frame(std::uint32_t sequence, std::size_t size) {
    byte_vector frame(size, std::byte{static_cast<unsigned char>(sequence & 0xff)});
    REQUIRE_FALSE(wire::ethernet::repr{default_gateway_mac, vm_mac, test_ethertype, {}}.emit(frame));
    wire::store_be32(frame, wire::ethernet::header_len, sequence);
    return frame;
}

/// What the batching service saw, kept outside it (the network owns the service).
struct batch_log {
    std::vector<std::size_t> per_burst;       // frames each end_burst found
    std::vector<std::uint32_t> sequences;     // read from the kept spans at end_burst
    std::size_t damaged = 0;                  // kept frames whose bytes changed before end_burst
    std::size_t end_bursts = 0;               // end_burst calls, with or without frames
    bool context_had_port = false;
};

/// A service that takes the test's frames, keeps a span into each (no copy but a private one to
/// compare with), and at the end of the burst checks them all and answers once for the batch: a
/// frame to the VM carrying how many frames the burst held.
struct batching_service {
    std::shared_ptr<batch_log> log = std::make_shared<batch_log>();
    struct kept {
        wire::const_bytes span;
        byte_vector copy;
        port_handle from;
    };
    std::vector<kept> burst;

    template <class Ctx>
    inspection inspect(const wire::parsed_frame& frame, Ctx& ctx) {
        if (!frame.valid || frame.ethertype != test_ethertype) return inspection::pass;
        burst.push_back({frame.bytes, byte_vector(frame.bytes.begin(), frame.bytes.end()), *ctx.port()});
        return inspection::taken;
    }

    template <class Ctx>
    void end_burst(Ctx& ctx) {
        ++log->end_bursts;
        if (ctx.port()) log->context_had_port = true;
        if (burst.empty()) return;
        for (const auto& k : burst) {
            if (!std::equal(k.span.begin(), k.span.end(), k.copy.begin(), k.copy.end())) ++log->damaged;
            log->sequences.push_back(wire::load_be32(k.span, wire::ethernet::header_len));
        }
        log->per_burst.push_back(burst.size());
        byte_vector reply(wire::ethernet::min_frame_len);
        (void)wire::ethernet::repr{vm_mac, default_gateway_mac, reply_ethertype, {}}.emit(reply);
        wire::store_be32(reply, wire::ethernet::header_len, static_cast<std::uint32_t>(burst.size()));
        ctx.send_to(burst.front().from, reply);
        burst.clear();
    }
};
static_assert(gateway_service<batching_service>);

struct burst_traits : default_network_traits {
    using clock_type = manual_clock;
};
using batch_network = basic_network<burst_traits, batching_service>;

std::vector<std::uint32_t> counting(std::uint32_t from, std::uint32_t to) {
    std::vector<std::uint32_t> out;
    for (std::uint32_t i = from; i < to; ++i) out.push_back(i);
    return out;
}

} // namespace

TEST_CASE("network burst: frames a service kept from inspect() are intact at end_burst, and its answers go out") {
    boost::asio::io_context io;
    batching_service service;
    const auto log = service.log;
    batch_network net{network_config{}, std::move(service)};
    auto [guest, ours] = backend::make_memory_link(io.get_executor(), backend::default_mtu, 256);
    const auto vm = net.attach("vm", std::move(ours), port_mac::custom(vm_mac));
    REQUIRE(vm);

    // 150 frames queued at once: the port delivers them in bursts of 64, 64 and 22, each frame in
    // its own region of the port's arena, of sizes up to the largest the MTU allows.
    for (std::uint32_t i = 0; i < 150; ++i) {
        const std::size_t size = i % 2 == 0 ? backend::max_frame_len(backend::default_mtu) - 4 // no VLAN tag
                                            : wire::ethernet::min_frame_len + i;
        REQUIRE_FALSE(guest.send(numbered_frame(i, size)));
    }
    io.restart();
    while (io.poll_one() != 0) {}

    CHECK(log->sequences == counting(0, 150));
    CHECK(log->per_burst == std::vector<std::size_t>{64, 64, 22});
    CHECK(log->damaged == 0);
    CHECK(log->end_bursts == 3);
    CHECK_FALSE(log->context_had_port);
    CHECK(net.stats().frames_in == 150);
    CHECK(net.stats().replies == 3);

    // Each burst's answer reached the VM, after the burst it answers.
    std::vector<std::uint32_t> answers;
    byte_vector buffer(backend::max_frame_len(backend::default_mtu));
    for (auto got = guest.try_receive(buffer); got; got = guest.try_receive(buffer)) {
        const auto frame = wire::parsed_frame::parse(wire::const_bytes{buffer.data(), *got});
        REQUIRE(frame.ethertype == reply_ethertype);
        answers.push_back(wire::load_be32(frame.bytes, wire::ethernet::header_len));
    }
    CHECK(answers == std::vector<std::uint32_t>{64, 64, 22});

    net.stop();
    io.restart();
    io.run();
    CHECK(net.port_count() == 0);
}

TEST_CASE("network burst: input() is a burst of one frame, and burst_input() frames wait for end_burst()") {
    batching_service service;
    const auto log = service.log;
    batch_network net{network_config{}, std::move(service)};
    const auto vm = net.add_port("vm", port_mac::custom(vm_mac));
    REQUIRE(vm);
    std::vector<std::pair<port_handle, byte_vector>> out;
    const auto emit = [&](port_handle to, wire::const_bytes frame) { out.emplace_back(to, byte_vector(frame.begin(), frame.end())); };
    const auto now = net.clock().now();

    // input(): the frame need not outlive the call, and its burst has ended when it returns.
    {
        auto frame = numbered_frame(7, 100);
        net.input(*vm, frame, now, emit);
        std::fill(frame.begin(), frame.end(), std::byte{0}); // the caller reuses its buffer at once
    }
    CHECK(log->per_burst == std::vector<std::size_t>{1});
    CHECK(log->sequences == std::vector<std::uint32_t>{7});
    CHECK(log->damaged == 0);
    REQUIRE(out.size() == 1);
    CHECK(out[0].first == *vm);

    // burst_input(): the caller keeps its frames until end_burst(), which the service acts on once.
    std::vector<byte_vector> frames;
    for (std::uint32_t i = 10; i < 15; ++i) frames.push_back(numbered_frame(i, 60 + i));
    for (const auto& frame : frames) net.burst_input(*vm, frame, now, emit);
    CHECK(log->per_burst.size() == 1); // nothing yet: the burst is open
    CHECK(out.size() == 1);
    net.end_burst(now, emit);
    CHECK(log->per_burst == std::vector<std::size_t>{1, 5});
    CHECK(log->sequences == std::vector<std::uint32_t>{7, 10, 11, 12, 13, 14});
    CHECK(log->damaged == 0);
    REQUIRE(out.size() == 2);
    CHECK(wire::load_be32(out[1].second, wire::ethernet::header_len) == 5);

    // A second end_burst with no frame since the last does nothing.
    const std::size_t calls = log->end_bursts;
    net.end_burst(now, emit);
    CHECK(log->end_bursts == calls);
    CHECK(out.size() == 2);
}
