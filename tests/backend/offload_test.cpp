#include <ankanet/backend/offload.hpp>

#include <ankanet/backend/memory.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/offload.hpp>
#include <ankanet/wire/tcp.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <optional>
#include <system_error>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;

namespace {

constexpr wire::ipv4_address source_ip{10, 0, 2, 2};
constexpr wire::ipv4_address guest_ip{10, 0, 2, 15};

/// A TCPv4 super-frame of `payload` bytes with a partial checksum, and its offload metadata.
struct super_frame {
    std::vector<std::byte> bytes;
    wire::offload meta;
};

super_frame make_super_frame(std::size_t payload, std::uint16_t mss) {
    const wire::ethernet::repr eth{wire::mac_address{{0x52, 0x55, 0x0a, 0, 2, 2}}, wire::mac_address{{0x52, 0x54, 0, 0x12, 0x34, 0x56}},
                                   wire::ethernet::ethertype::ipv4, std::nullopt};
    wire::tcp::repr seg;
    seg.source_port = 443;
    seg.destination_port = 40000;
    seg.seq_number = 5000;
    seg.flags = wire::tcp::flag_set{wire::tcp::flag::ack} | wire::tcp::flag::psh;
    seg.window = 1000;
    seg.payload_len = payload;
    wire::ipv4::repr ip;
    ip.source = source_ip;
    ip.destination = guest_ip;
    ip.protocol = wire::ipv4::protocol::tcp;
    ip.payload_len = seg.buffer_len() + payload;
    const std::size_t l4 = eth.buffer_len() + ip.buffer_len();
    super_frame f;
    f.bytes.resize(l4 + seg.buffer_len() + payload);
    for (std::size_t i = 0; i < payload; ++i) f.bytes[l4 + seg.buffer_len() + i] = std::byte(static_cast<unsigned char>(i % 251));
    REQUIRE_FALSE(eth.emit(f.bytes));
    REQUIRE_FALSE(ip.emit(wire::mutable_bytes{f.bytes}.subspan(eth.buffer_len())));
    REQUIRE_FALSE(seg.emit(wire::mutable_bytes{f.bytes}.subspan(l4), source_ip, guest_ip));
    // Leave the checksum as a driver does for the NIC: the pseudo-header sum only.
    const auto length = static_cast<std::uint16_t>(f.bytes.size() - l4);
    wire::store_be16(f.bytes, l4 + wire::tcp::field::checksum,
                     wire::checksum::ipv4_pseudo_header(source_ip, guest_ip, wire::tcp::protocol_number, length).sum());
    f.meta = wire::offload::tcpv4_gso(l4, l4 + seg.buffer_len(), mss);
    return f;
}

/// A backend that records what it is given; with `offloads`, it takes metadata too.
struct recording_backend {
    using executor_type = boost::asio::any_io_executor;
    executor_type executor;
    std::vector<std::vector<std::byte>> sent;
    std::vector<wire::offload> metas;
    int fail_on = -1; ///< the index of a send() to refuse

    executor_type get_executor() const { return executor; }
    template <class Handler>
    void async_receive(wire::mutable_bytes, Handler&&) {}
    std::error_code send(wire::const_bytes frame) {
        const bool fail = static_cast<int>(sent.size()) == fail_on;
        sent.emplace_back(frame.begin(), frame.end());
        return fail ? make_error_code(std::errc::no_buffer_space) : std::error_code{};
    }
    std::size_t mtu() const { return default_mtu; }
    std::optional<wire::mac_address> mac() const { return std::nullopt; }
    counters stats() const { return {}; }
    void close() {}
};

struct offloading_backend : recording_backend {
    bool on = true;
    using recording_backend::send;
    std::error_code send(wire::const_bytes frame, const wire::offload& meta) {
        metas.push_back(meta);
        return send(frame);
    }
    bool accepts_offload() const { return on; }
};

static_assert(frame_backend<recording_backend> && !offload_backend<recording_backend>);
static_assert(offload_backend<offloading_backend>);

void check_segments(const std::vector<std::vector<std::byte>>& frames, const super_frame& original) {
    std::vector<std::byte> joined;
    for (const auto& frame : frames) {
        const wire::ipv4::packet<wire::const_bytes> ip{wire::const_bytes{frame}.subspan(wire::ethernet::header_len)};
        REQUIRE(wire::ipv4::repr::parse(ip));
        const wire::tcp::packet<wire::const_bytes> seg{ip.payload()};
        REQUIRE(seg.verify_checksum(source_ip, guest_ip));
        CHECK(frame.size() <= max_frame_len(default_mtu));
        joined.insert(joined.end(), seg.payload().begin(), seg.payload().end());
    }
    const std::size_t headers = original.meta.hdr_len;
    CHECK(std::equal(joined.begin(), joined.end(), original.bytes.begin() + static_cast<std::ptrdiff_t>(headers), original.bytes.end()));
    CHECK(joined.size() == original.bytes.size() - headers);
}

} // namespace

TEST_CASE("backend/offload: a backend without offloads gets the segments, with checksums finished") {
    boost::asio::io_context io;
    recording_backend backend{io.get_executor(), {}, {}, -1};
    const auto frame = make_super_frame(65000, 1460);
    REQUIRE_FALSE(send_offloaded(backend, frame.bytes, frame.meta));
    CHECK(backend.sent.size() == (65000 + 1459) / 1460);
    check_segments(backend.sent, frame);
}

TEST_CASE("backend/offload: an offload backend that accepts metadata gets the frame whole") {
    boost::asio::io_context io;
    offloading_backend backend{{io.get_executor(), {}, {}, -1}};
    const auto frame = make_super_frame(30000, 1448);
    REQUIRE_FALSE(send_offloaded(backend, frame.bytes, frame.meta));
    REQUIRE(backend.sent.size() == 1);
    CHECK(backend.sent[0] == frame.bytes);
    REQUIRE(backend.metas.size() == 1);
    CHECK(backend.metas[0] == frame.meta);

    // The same backend opened without offloads: the software path.
    backend.sent.clear();
    backend.metas.clear();
    backend.on = false;
    REQUIRE_FALSE(send_offloaded(backend, frame.bytes, frame.meta));
    CHECK(backend.metas.empty());
    CHECK(backend.sent.size() == (30000 + 1447) / 1448);
    check_segments(backend.sent, frame);
}

TEST_CASE("backend/offload: plain metadata is a plain send, even to an offload backend") {
    boost::asio::io_context io;
    offloading_backend backend{{io.get_executor(), {}, {}, -1}};
    const std::vector<std::byte> frame(60, std::byte{1});
    REQUIRE_FALSE(send_offloaded(backend, frame, wire::offload{}));
    CHECK(backend.sent.size() == 1);
    CHECK(backend.metas.empty());
}

TEST_CASE("backend/offload: a segment the backend refuses does not stop the others, and its error is returned") {
    boost::asio::io_context io;
    recording_backend backend{io.get_executor(), {}, {}, 2};
    const auto frame = make_super_frame(10000, 1000);
    CHECK(send_offloaded(backend, frame.bytes, frame.meta) == std::errc::no_buffer_space);
    CHECK(backend.sent.size() == 10);
}

TEST_CASE("backend/offload: a frame segmentation refuses sends nothing") {
    boost::asio::io_context io;
    recording_backend backend{io.get_executor(), {}, {}, -1};
    auto frame = make_super_frame(5000, 1000);
    frame.meta.gso_type = wire::offload::gso::tcpv6;
    CHECK(send_offloaded(backend, frame.bytes, frame.meta) == errc::unsupported);
    CHECK(backend.sent.empty());
}

TEST_CASE("backend/offload: segments cross a memory link as ordinary frames") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    const auto frame = make_super_frame(20000, 1460);
    REQUIRE_FALSE(send_offloaded(a, frame.bytes, frame.meta));
    std::vector<std::vector<std::byte>> got;
    std::vector<std::byte> buffer(max_frame_len(b.mtu()));
    for (;;) {
        auto n = b.try_receive(buffer);
        if (!n) {
            CHECK(is_nothing_queued(n.error()));
            break;
        }
        got.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*n));
    }
    CHECK(got.size() == (20000 + 1459) / 1460);
    check_segments(got, frame);
}
