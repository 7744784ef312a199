#include <ankanet/dns/query_table.hpp>

#include "../support/counting_allocator.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

using ankanet::detail::siphash_key;
using ankanet::dns::guest_query_key;
using ankanet::dns::in_flight_query;
using ankanet::dns::insert_status;
using ankanet::dns::query_request;
using ankanet::dns::query_table;
using ankanet::dns::query_table_config;
using ankanet::dns::reply_status;
using ankanet::wire::const_bytes;
using ankanet::wire::ipv4_address;
using ankanet::wire::mutable_bytes;
namespace wdns = ankanet::wire::dns;
using namespace std::chrono_literals;

namespace {

using time_point = std::chrono::steady_clock::time_point;
const time_point t0{std::chrono::seconds{1000}};
constexpr siphash_key test_key{0x0706050403020100u, 0x0f0e0d0c0b0a0908u};

query_table_config config_with(std::size_t capacity = 64, std::size_t per_vm = 64, std::size_t max_vms = 8,
                               siphash_key key = test_key) {
    query_table_config c;
    c.capacity = capacity;
    c.per_vm_limit = per_vm;
    c.max_vms = max_vms;
    c.key = key;
    return c;
}

wdns::question question(std::string_view name, std::uint16_t qtype = wdns::type::a) {
    return {wdns::name::from_text(name).value(), qtype, wdns::rr_class::in};
}

query_request request(std::uint32_t vm, std::uint16_t guest_id, std::string_view name = "www.example.test",
                      std::uint16_t server = 0, time_point deadline = t0 + 5s, std::uint16_t port = 40000) {
    query_request r;
    r.guest = {vm, ipv4_address{192, 168, 64, static_cast<std::uint8_t>(2 + vm)}, port, guest_id};
    r.question = question(name);
    r.query_flags = wdns::flag::rd;
    r.server = server;
    r.deadline = deadline;
    return r;
}

/// The upstream's reply to `q` relayed with `upstream_id`: what the forwarder receives.
std::vector<std::byte> reply_bytes(std::uint16_t upstream_id, const wdns::question& q, std::uint8_t code = wdns::rcode::no_error) {
    auto r = wdns::repr::make_response(upstream_id, wdns::flag::rd, q, code);
    if (code == wdns::rcode::no_error) (void)r.add_answer(ipv4_address{192, 0, 2, 1}, 60);
    std::vector<std::byte> out(r.buffer_len());
    REQUIRE_FALSE(r.emit(out));
    return out;
}

} // namespace

TEST_CASE("dns/query_table: a query is matched by its upstream ID, server and question, then removed") {
    query_table table{config_with()};
    const auto req = request(1, 0xabcd);
    const auto inserted = table.insert(req);
    REQUIRE(inserted.status == insert_status::inserted);
    CHECK(table.size() == 1);
    CHECK(table.in_flight(1) == 1);
    REQUIRE(table.find(inserted.upstream_id) != nullptr);
    CHECK(table.find(inserted.upstream_id)->request.guest == req.guest);

    const auto reply = reply_bytes(inserted.upstream_id, req.question);
    const auto match = table.take_reply(0, reply);
    REQUIRE(match.status == reply_status::matched);
    CHECK(match.query.upstream_id == inserted.upstream_id);
    CHECK(match.query.request.guest == req.guest);
    CHECK(match.query.request.guest.guest_id == 0xabcd);
    CHECK(match.query.request.query_flags == wdns::flag::rd);
    CHECK(table.size() == 0);
    CHECK(table.in_flight(1) == 0);
    CHECK(table.find(inserted.upstream_id) == nullptr);
    // The same reply again (a duplicate from upstream) finds nothing.
    CHECK(table.take_reply(0, reply).status == reply_status::unknown_id);
    CHECK(table.counters().matched == 1);
    CHECK(table.counters().unknown_id == 1);
}

TEST_CASE("dns/query_table: replies that fail a check are counted and leave the query in flight") {
    query_table table{config_with()};
    const auto req = request(0, 7, "vm.example.test", 1);
    const auto id = table.insert(req).upstream_id;

    // From another server.
    CHECK(table.take_reply(0, reply_bytes(id, req.question)).status == reply_status::wrong_server);
    // For another name, type or class.
    CHECK(table.take_reply(1, reply_bytes(id, question("other.example.test"))).status == reply_status::question_mismatch);
    CHECK(table.take_reply(1, reply_bytes(id, question("vm.example.test", wdns::type::aaaa))).status ==
          reply_status::question_mismatch);
    auto chaos = req.question;
    chaos.qclass = wdns::rr_class::chaos;
    CHECK(table.take_reply(1, reply_bytes(id, chaos)).status == reply_status::question_mismatch);
    // Not a response; shorter than a header; no question.
    auto not_response = reply_bytes(id, req.question);
    wdns::packet<mutable_bytes>{not_response}.clear_flag(wdns::flag::qr);
    CHECK(table.take_reply(1, not_response).status == reply_status::malformed);
    CHECK(table.take_reply(1, const_bytes{reply_bytes(id, req.question)}.first(11)).status == reply_status::malformed);
    auto no_question = reply_bytes(id, req.question);
    no_question.resize(wdns::header_len);
    wdns::packet<mutable_bytes>{no_question}.set_qdcount(0);
    CHECK(table.take_reply(1, no_question).status == reply_status::malformed);
    // Another ID.
    CHECK(table.take_reply(1, reply_bytes(static_cast<std::uint16_t>(id + 1), req.question)).status == reply_status::unknown_id);

    CHECK(table.size() == 1);
    const auto& c = table.counters();
    CHECK(c.wrong_server == 1);
    CHECK(c.question_mismatch == 3);
    CHECK(c.malformed_replies == 3);
    CHECK(c.unknown_id == 1);
    // The real reply still gets through, whatever the case of its question name.
    const auto match = table.take_reply(1, reply_bytes(id, question("VM.Example.TEST")));
    CHECK(match.status == reply_status::matched);
}

TEST_CASE("dns/query_table: a truncated reply whose later sections do not hold together still matches") {
    query_table table{config_with()};
    const auto req = request(0, 1);
    const auto id = table.insert(req).upstream_id;
    auto reply = reply_bytes(id, req.question);
    wdns::packet<mutable_bytes> header{reply};
    header.set_flag(wdns::flag::tc);
    header.set_ancount(9); // the answers were cut
    REQUIRE_FALSE(wdns::message::parse(reply));
    CHECK(table.take_reply(0, reply).status == reply_status::matched);
}

TEST_CASE("dns/query_table: a guest repeating a query gets the one in flight") {
    query_table table{config_with()};
    const auto first = table.insert(request(2, 99));
    const auto again = table.insert(request(2, 99));
    CHECK(again.status == insert_status::duplicate);
    CHECK(again.upstream_id == first.upstream_id);
    CHECK(again.ok());
    CHECK(table.size() == 1);
    // The same ID for another question, from another port or from another VM is another query.
    CHECK(table.insert(request(2, 99, "other.example.test")).status == insert_status::inserted);
    CHECK(table.insert(request(2, 99, "www.example.test", 0, t0 + 5s, 40001)).status == insert_status::inserted);
    CHECK(table.insert(request(3, 99)).status == insert_status::inserted);
    CHECK(table.size() == 4);
    CHECK(table.counters().duplicates == 1);
}

TEST_CASE("dns/query_table: capacity, the per-VM limit and VM ids bound what is in flight") {
    query_table table{config_with(8, 3, 4)};
    for (std::uint16_t i = 0; i < 3; ++i) CHECK(table.insert(request(0, i)).status == insert_status::inserted);
    CHECK(table.insert(request(0, 3)).status == insert_status::vm_limit);
    CHECK(table.in_flight(0) == 3);
    // Other VMs are not held back by VM 0.
    for (std::uint16_t i = 0; i < 3; ++i) CHECK(table.insert(request(1, i)).status == insert_status::inserted);
    CHECK(table.insert(request(2, 0)).status == insert_status::inserted);
    CHECK(table.insert(request(2, 1)).status == insert_status::inserted);
    CHECK(table.insert(request(3, 0)).status == insert_status::table_full);
    CHECK(table.insert(request(4, 0)).status == insert_status::bad_vm);
    CHECK(table.size() == 8);
    const auto& c = table.counters();
    CHECK(c.refused_vm_limit == 1);
    CHECK(c.refused_full == 1);
    CHECK(c.refused_bad_vm == 1);
    // Answering one frees its slot.
    const auto* any = table.find(table.insert(request(2, 1)).upstream_id); // a duplicate: found
    REQUIRE(any != nullptr);
    REQUIRE(table.take_reply(0, reply_bytes(any->upstream_id, any->request.question)).status == reply_status::matched);
    CHECK(table.insert(request(3, 0)).status == insert_status::inserted);

    // Out-of-range configurations are clamped.
    query_table tiny{config_with(0, 0, 0)};
    CHECK(tiny.capacity() == 1);
    CHECK(tiny.insert(request(0, 1)).status == insert_status::inserted);
    query_table huge{config_with(1'000'000)};
    CHECK(huge.capacity() == query_table::max_capacity);
}

TEST_CASE("dns/query_table: expiry hands each overdue query to the callback once") {
    query_table table{config_with()};
    CHECK_FALSE(table.next_deadline());
    const auto a = table.insert(request(0, 1, "a.test", 0, t0 + 2s)).upstream_id;
    const auto b = table.insert(request(0, 2, "b.test", 0, t0 + 1s)).upstream_id;
    const auto c = table.insert(request(1, 3, "c.test", 0, t0 + 3s)).upstream_id;
    CHECK(table.next_deadline() == t0 + 1s);

    std::vector<std::uint16_t> expired;
    const auto collect = [&](const in_flight_query& q) { expired.push_back(q.upstream_id); };
    CHECK(table.expire(t0, collect) == 0);
    CHECK(table.expire(t0 + 1s, collect) == 1); // a deadline at `now` has passed
    CHECK(expired == std::vector<std::uint16_t>{b});
    CHECK(table.next_deadline() == t0 + 2s);
    CHECK(table.expire(t0 + 10s, collect) == 2);
    std::sort(expired.begin() + 1, expired.end());
    std::vector<std::uint16_t> rest{a, c};
    std::sort(rest.begin(), rest.end());
    CHECK(std::vector<std::uint16_t>(expired.begin() + 1, expired.end()) == rest);
    CHECK(table.empty());
    CHECK_FALSE(table.next_deadline());
    CHECK(table.counters().expired == 3);
    // A late reply to an expired query is unknown: the guest already had its SERVFAIL.
    CHECK(table.take_reply(0, reply_bytes(a, question("a.test"))).status == reply_status::unknown_id);
}

TEST_CASE("dns/query_table: the expiry callback may insert, and its deadlines count") {
    query_table table{config_with()};
    (void)table.insert(request(0, 1, "a.test", 0, t0 + 1s));
    (void)table.insert(request(0, 2, "b.test", 0, t0 + 9s));
    std::size_t calls = 0;
    CHECK(table.expire(t0 + 1s, [&](const in_flight_query& q) {
        ++calls;
        auto retry = q.request; // e.g. retried on the next server
        retry.server = 1;
        retry.deadline = t0 + 3s;
        CHECK(table.insert(retry).status == insert_status::inserted);
    }) == 1);
    CHECK(calls == 1);
    CHECK(table.size() == 2);
    CHECK(table.next_deadline() <= t0 + 3s);
    CHECK(table.expire(t0 + 3s, [](const in_flight_query& q) { CHECK(q.request.server == 1); }) == 1);
    CHECK(table.next_deadline() == t0 + 9s);
}

TEST_CASE("dns/query_table: cancelling a VM removes only its queries") {
    query_table table{config_with()};
    for (std::uint16_t i = 0; i < 5; ++i) (void)table.insert(request(1, i));
    const auto other = table.insert(request(2, 0)).upstream_id;
    CHECK(table.cancel_vm(1) == 5);
    CHECK(table.cancel_vm(1) == 0);
    CHECK(table.cancel_vm(99) == 0);
    CHECK(table.size() == 1);
    CHECK(table.in_flight(1) == 0);
    CHECK(table.find(other) != nullptr);
    CHECK(table.counters().cancelled == 5);
}

TEST_CASE("dns/query_table: upstream IDs are unique in flight, unpredictable and independent of guests' IDs") {
    query_table table{config_with(query_table::max_capacity, query_table::max_capacity, 1)};
    std::set<std::uint16_t> ids;
    std::vector<std::uint16_t> order;
    // Every guest uses ID 0 (a common stub habit): each still gets its own upstream ID.
    for (std::uint32_t i = 0; i < query_table::max_capacity; ++i) {
        const auto r = table.insert(request(0, 0, "www.example.test", 0, t0 + 5s, static_cast<std::uint16_t>(i)));
        REQUIRE(r.status == insert_status::inserted);
        order.push_back(r.upstream_id);
        REQUIRE(ids.insert(r.upstream_id).second);
    }
    CHECK(table.size() == query_table::max_capacity);
    CHECK(table.counters().refused_ids_exhausted == 0);

    // Not sequential: consecutive IDs differ by 1 about as often as chance has it (1 in 65536).
    std::size_t steps_of_one = 0;
    for (std::size_t i = 1; i < order.size(); ++i) {
        if (static_cast<std::uint16_t>(order[i] - order[i - 1]) == 1) ++steps_of_one;
    }
    CHECK(steps_of_one < 10);
    // Spread over the space: both halves and every high byte are used.
    std::array<std::size_t, 256> high{};
    for (auto id : order) ++high[id >> 8];
    CHECK(std::all_of(high.begin(), high.end(), [](std::size_t n) { return n > 0; }));

    // The same key gives the same sequence (deterministic for tests); another key another one.
    query_table same{config_with(16, 16, 1)};
    query_table other{config_with(16, 16, 1, siphash_key{1, 2})};
    std::size_t equal_same = 0;
    std::size_t equal_other = 0;
    for (std::uint16_t i = 0; i < 16; ++i) {
        const auto s = same.insert(request(0, i)).upstream_id;
        const auto o = other.insert(request(0, i)).upstream_id;
        if (s == order[i]) ++equal_same;
        if (o == order[i]) ++equal_other;
    }
    CHECK(equal_same == 16);
    CHECK(equal_other < 2);
}

TEST_CASE("dns/query_table: a full table of upstream IDs stays collision-free across churn") {
    query_table table{config_with(1024, 1024, 1)};
    std::mt19937 rng{12};
    std::map<std::uint16_t, std::uint16_t> in_flight; // upstream ID → guest ID
    std::uint16_t next_guest = 0;
    for (int step = 0; step < 50000; ++step) {
        if (in_flight.size() < 1024 && rng() % 2 == 0) {
            const auto r = table.insert(request(0, next_guest));
            REQUIRE(r.status == insert_status::inserted);
            REQUIRE(in_flight.emplace(r.upstream_id, next_guest).second);
            ++next_guest;
        } else if (!in_flight.empty()) {
            auto it = in_flight.begin();
            std::advance(it, static_cast<std::ptrdiff_t>(rng() % in_flight.size()));
            const auto m = table.take_reply(0, reply_bytes(it->first, question("www.example.test")));
            REQUIRE(m.status == reply_status::matched);
            REQUIRE(m.query.request.guest.guest_id == it->second);
            in_flight.erase(it);
        }
    }
    CHECK(table.size() == in_flight.size());
}

TEST_CASE("dns/query_table: randomized operations agree with a simple model") {
    constexpr std::size_t capacity = 48;
    constexpr std::size_t per_vm = 20;
    constexpr std::uint32_t vms = 4;
    query_table table{config_with(capacity, per_vm, vms)};
    std::map<std::uint16_t, query_request> model; // upstream ID → request
    std::mt19937 rng{20261128};
    time_point now = t0;
    const std::array<std::string_view, 3> names{"a.test", "b.test", "c.test"};

    const auto model_in_flight = [&](std::uint32_t vm) {
        return static_cast<std::size_t>(std::count_if(model.begin(), model.end(), [&](const auto& e) { return e.second.guest.vm == vm; }));
    };

    for (int step = 0; step < 30000; ++step) {
        const auto op = rng() % 10;
        if (op < 5) { // insert
            const auto vm = static_cast<std::uint32_t>(rng() % (vms + 1)); // vms itself is out of range
            auto req = request(vm, static_cast<std::uint16_t>(rng() % 8), names[rng() % names.size()],
                               static_cast<std::uint16_t>(rng() % 2), now + std::chrono::milliseconds(rng() % 3000),
                               static_cast<std::uint16_t>(5300 + rng() % 2));
            const auto dup = std::find_if(model.begin(), model.end(), [&](const auto& e) {
                return e.second.guest == req.guest && e.second.question.qname.iequals(req.question.qname);
            });
            insert_status expected = insert_status::inserted;
            if (vm >= vms) {
                expected = insert_status::bad_vm;
            } else if (dup != model.end()) {
                expected = insert_status::duplicate;
            } else if (model.size() == capacity) {
                expected = insert_status::table_full;
            } else if (model_in_flight(vm) == per_vm) {
                expected = insert_status::vm_limit;
            }
            const auto r = table.insert(req);
            REQUIRE(r.status == expected);
            if (expected == insert_status::duplicate) REQUIRE(r.upstream_id == dup->first);
            if (expected == insert_status::inserted) REQUIRE(model.emplace(r.upstream_id, req).second);
        } else if (op < 8) { // a reply: for something in flight, or a random ID, from either server
            std::uint16_t id = static_cast<std::uint16_t>(rng());
            if (!model.empty() && rng() % 4 != 0) {
                auto it = model.begin();
                std::advance(it, static_cast<std::ptrdiff_t>(rng() % model.size()));
                id = it->first;
            }
            const auto server = static_cast<std::uint16_t>(rng() % 2);
            const auto name = names[rng() % names.size()];
            const auto m = table.take_reply(server, reply_bytes(id, question(name)));
            const auto it = model.find(id);
            reply_status expected = reply_status::matched;
            if (it == model.end()) {
                expected = reply_status::unknown_id;
            } else if (it->second.server != server) {
                expected = reply_status::wrong_server;
            } else if (!it->second.question.qname.matches(name)) {
                expected = reply_status::question_mismatch;
            }
            REQUIRE(m.status == expected);
            if (expected == reply_status::matched) {
                REQUIRE(m.query.request.guest == it->second.guest);
                model.erase(it);
            }
        } else if (op < 9) { // time passes
            now += std::chrono::milliseconds(rng() % 1500);
            std::set<std::uint16_t> expected;
            for (const auto& [id, req] : model) {
                if (req.deadline <= now) expected.insert(id);
            }
            std::set<std::uint16_t> got;
            const auto n = table.expire(now, [&](const in_flight_query& q) { REQUIRE(got.insert(q.upstream_id).second); });
            REQUIRE(got == expected);
            REQUIRE(n == expected.size());
            for (auto id : expected) model.erase(id);
            if (!model.empty()) {
                const auto earliest = std::min_element(model.begin(), model.end(), [](const auto& x, const auto& y) {
                                          return x.second.deadline < y.second.deadline;
                                      })->second.deadline;
                REQUIRE(table.next_deadline().has_value());
                REQUIRE(*table.next_deadline() <= earliest);
            }
        } else { // a VM goes away
            const auto vm = static_cast<std::uint32_t>(rng() % vms);
            const auto expected = model_in_flight(vm);
            REQUIRE(table.cancel_vm(vm) == expected);
            std::erase_if(model, [&](const auto& e) { return e.second.guest.vm == vm; });
        }
        REQUIRE(table.size() == model.size());
        for (std::uint32_t vm = 0; vm < vms; ++vm) REQUIRE(table.in_flight(vm) == model_in_flight(vm));
    }
    // Everything the model holds is findable by its ID, with its request.
    for (const auto& [id, req] : model) {
        const auto* q = table.find(id);
        REQUIRE(q != nullptr);
        CHECK(q->request.guest == req.guest);
    }
}

TEST_CASE("dns/query_table: insert, take_reply and expire allocate nothing") {
    query_table table{config_with(256, 256, 4)};
    std::vector<std::vector<std::byte>> replies;
    std::vector<query_request> requests;
    for (std::uint16_t i = 0; i < 200; ++i) requests.push_back(request(i % 4, i, "www.example.test", 0, t0 + std::chrono::seconds(i % 3)));
    std::vector<std::uint16_t> ids;
    ids.reserve(requests.size());
    replies.reserve(requests.size());

    const auto before = ankanet::test::heap::allocations.load();
    for (const auto& r : requests) ids.push_back(table.insert(r).upstream_id);
    std::size_t expired = table.expire(t0 + 1s, [](const in_flight_query&) {});
    (void)table.insert(requests[0]);
    (void)table.cancel_vm(3);
    const auto after = ankanet::test::heap::allocations.load();
    CHECK(after == before);
    CHECK(expired > 0);

    for (std::size_t i = 0; i < requests.size(); ++i) replies.push_back(reply_bytes(ids[i], requests[i].question));
    const auto before_replies = ankanet::test::heap::allocations.load();
    std::size_t matched = 0;
    for (const auto& reply : replies) matched += table.take_reply(0, reply).status == reply_status::matched ? 1u : 0u;
    CHECK(ankanet::test::heap::allocations.load() == before_replies);
    CHECK(matched > 0);
}
