#include <ankanet/backend/memory.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <array>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;

namespace {

std::vector<std::byte> frame_of(std::size_t size, std::uint8_t fill) {
    return std::vector<std::byte>(size, std::byte{fill});
}

struct received {
    std::error_code ec;
    std::vector<std::byte> bytes;
    bool done = false;
};

void receive_one(memory_endpoint& end, std::vector<std::byte>& buffer, received& out) {
    end.async_receive(buffer, [&buffer, &out](std::error_code ec, std::size_t n) {
        out.ec = ec;
        out.bytes.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
        out.done = true;
    });
}

} // namespace

TEST_CASE("memory: frames cross the link in order, both ways") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    std::vector<std::byte> buffer(max_frame_len(a.mtu()));

    REQUIRE_FALSE(a.send(frame_of(60, 1)));
    REQUIRE_FALSE(a.send(frame_of(1514, 2)));
    REQUIRE_FALSE(b.send(frame_of(64, 3)));

    received r;
    receive_one(b, buffer, r);
    CHECK_FALSE(r.done); // completions are posted, never run inline
    io.run();
    REQUIRE(r.done);
    CHECK_FALSE(r.ec);
    CHECK(r.bytes == frame_of(60, 1));

    r = {};
    receive_one(b, buffer, r);
    io.restart();
    io.run();
    CHECK(r.bytes == frame_of(1514, 2));

    r = {};
    receive_one(a, buffer, r);
    io.restart();
    io.run();
    CHECK(r.bytes == frame_of(64, 3));

    CHECK(a.stats().tx_frames == 2);
    CHECK(a.stats().tx_bytes == 60 + 1514);
    CHECK(b.stats().rx_frames == 2);
    CHECK(a.stats().rx_frames == 1);
}

TEST_CASE("memory: a receive posted before the frame completes when it arrives") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    std::vector<std::byte> buffer(max_frame_len(a.mtu()));
    received r;
    receive_one(b, buffer, r);
    io.run();
    CHECK_FALSE(r.done);
    REQUIRE_FALSE(a.send(frame_of(100, 9)));
    io.restart();
    io.run();
    REQUIRE(r.done);
    CHECK(r.bytes == frame_of(100, 9));
}

TEST_CASE("memory: frames of a bad size are refused and counted") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor(), 1500);
    CHECK(a.send(frame_of(13, 0)) == errc::truncated);
    CHECK(a.send(frame_of(0, 0)) == errc::truncated);
    CHECK(a.send(frame_of(max_frame_len(1500) + 1, 0)) == errc::bad_length);
    CHECK_FALSE(a.send(frame_of(max_frame_len(1500), 0)));
    CHECK(a.stats().tx_invalid == 3);
    CHECK(a.stats().tx_frames == 1);
}

TEST_CASE("memory: a full ring drops and counts instead of growing") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor(), 1500, 4);
    for (int i = 0; i < 4; ++i) REQUIRE_FALSE(a.send(frame_of(60, static_cast<std::uint8_t>(i))));
    CHECK(a.send(frame_of(60, 99)) == std::errc::no_buffer_space);
    CHECK(a.stats().tx_dropped == 1);

    // Draining one slot makes room again; order is preserved.
    std::vector<std::byte> buffer(max_frame_len(1500));
    received r;
    receive_one(b, buffer, r);
    io.run();
    CHECK(r.bytes == frame_of(60, 0));
    CHECK_FALSE(a.send(frame_of(60, 4)));
}

TEST_CASE("memory: close aborts the pending receive, and the peer drains, then sees peer_closed") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    std::vector<std::byte> buffer_a(max_frame_len(a.mtu()));
    std::vector<std::byte> buffer_b(max_frame_len(b.mtu()));

    REQUIRE_FALSE(a.send(frame_of(60, 5)));
    received ra;
    receive_one(a, buffer_a, ra);
    a.close();
    io.run();
    REQUIRE(ra.done);
    CHECK(ra.ec == std::errc::operation_canceled);
    CHECK(a.send(frame_of(60, 6)) == std::errc::not_connected);
    ra = {};
    receive_one(a, buffer_a, ra); // a receive after close completes too, canceled
    io.restart();
    io.run();
    REQUIRE(ra.done);
    CHECK(ra.ec == std::errc::operation_canceled);

    received rb;
    receive_one(b, buffer_b, rb);
    io.restart();
    io.run();
    CHECK(rb.bytes == frame_of(60, 5)); // queued before the close: still delivered
    rb = {};
    receive_one(b, buffer_b, rb);
    io.restart();
    io.run();
    REQUIRE(rb.done);
    CHECK(rb.ec == errc::peer_closed);
    CHECK(b.send(frame_of(60, 7)) == std::errc::not_connected);
}

TEST_CASE("memory: a frame longer than the receive buffer is dropped with buffer_too_small") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    REQUIRE_FALSE(a.send(frame_of(200, 1)));
    std::vector<std::byte> small(100);
    received r;
    receive_one(b, small, r);
    io.run();
    CHECK(r.ec == errc::buffer_too_small);
}

// --- try_receive: the burst path (burst_backend) ------------------------------------------------

static_assert(burst_backend<memory_endpoint>);

TEST_CASE("memory: try_receive takes queued frames in order, synchronously, and says when nothing is queued") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    std::vector<std::byte> buffer(max_frame_len(b.mtu()));

    auto empty = b.try_receive(buffer);
    REQUIRE_FALSE(empty);
    CHECK(empty.error() == std::errc::resource_unavailable_try_again);
    CHECK(is_nothing_queued(empty.error()));

    for (std::uint8_t i = 0; i < 10; ++i) REQUIRE_FALSE(a.send(frame_of(60u + i, i)));
    // Frames of a refused size never enter the ring: counted at the sender, never received.
    CHECK(a.send(frame_of(13, 0xee)) == errc::truncated);
    CHECK(a.send(frame_of(max_frame_len(1500) + 1, 0xee)) == errc::bad_length);
    for (std::uint8_t i = 0; i < 10; ++i) {
        auto n = b.try_receive(buffer);
        REQUIRE(n);
        CHECK(std::vector<std::byte>(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*n)) ==
              frame_of(60u + i, i));
    }
    CHECK(b.try_receive(buffer).error() == nothing_queued);
    CHECK(io.poll() == 0); // nothing went through the executor
    CHECK(b.stats().rx_frames == 10);
    CHECK(b.stats().rx_bytes == 10 * 60 + 45);
    CHECK(a.stats().tx_invalid == 2);
}

TEST_CASE("memory: try_receive drops a frame longer than the buffer, refuses while a receive is pending") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    REQUIRE_FALSE(a.send(frame_of(200, 1)));
    REQUIRE_FALSE(a.send(frame_of(80, 2)));
    std::vector<std::byte> small(100);
    CHECK(b.try_receive(small).error() == errc::buffer_too_small);
    auto n = b.try_receive(small); // the long frame is gone, the next one fits
    REQUIRE(n);
    CHECK(*n == 80);
    CHECK(b.stats().rx_frames == 1);

    std::vector<std::byte> buffer(max_frame_len(b.mtu()));
    received r;
    receive_one(b, buffer, r);
    CHECK(b.try_receive(buffer).error() == std::errc::operation_in_progress);
    REQUIRE_FALSE(a.send(frame_of(70, 3))); // completes the pending receive (posted)...
    REQUIRE_FALSE(a.send(frame_of(71, 4)));
    io.run();
    CHECK(r.bytes == frame_of(70, 3));
    auto after = b.try_receive(buffer); // ...and once it has, the burst path takes the next
    REQUIRE(after);
    CHECK(*after == 71);
}

TEST_CASE("memory: try_receive after close is canceled, and after the peer closed drains then says peer_closed") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    std::vector<std::byte> buffer(max_frame_len(b.mtu()));
    REQUIRE_FALSE(a.send(frame_of(60, 1)));
    REQUIRE_FALSE(b.send(frame_of(60, 2)));
    a.close();
    CHECK(a.try_receive(buffer).error() == std::errc::operation_canceled); // even with a frame queued
    auto queued = b.try_receive(buffer);
    REQUIRE(queued);
    CHECK(std::vector<std::byte>(buffer.begin(), buffer.begin() + 60) == frame_of(60, 1));
    CHECK(b.try_receive(buffer).error() == errc::peer_closed);
    CHECK(b.try_receive(buffer).error() == errc::peer_closed); // and stays so
}

TEST_CASE("memory: a receive handler too large to be stored inline completes, and one never run is destroyed") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor());
    std::vector<std::byte> buffer(max_frame_len(a.mtu()));

    // Larger than the completion's inline storage: kept on the heap, moved through post, run once.
    std::array<std::byte, 4 * ankanet::backend::detail::receive_completion::inline_size> ballast{};
    ballast.back() = std::byte{7};
    std::size_t got = 0;
    std::byte seen{};
    b.async_receive(buffer, [&got, &seen, ballast](std::error_code ec, std::size_t n) {
        if (!ec) got = n;
        seen = ballast.back();
    });
    REQUIRE_FALSE(a.send(frame_of(100, 9)));
    io.run();
    CHECK(got == 100);
    CHECK(seen == std::byte{7});

    // A pending receive whose link goes away with it: its handler (and what it holds) is released
    // without being called; the sanitizer build would report the leak otherwise.
    auto owned = std::make_shared<int>(5);
    bool called = false;
    {
        auto [c, d] = make_memory_link(io.get_executor());
        d.async_receive(buffer, [owned, &called, ballast](std::error_code, std::size_t) { called = true; });
        CHECK(owned.use_count() == 2);
    }
    CHECK(owned.use_count() == 1);
    CHECK_FALSE(called);
}
