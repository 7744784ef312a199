// Fuzz: DNS messages. Parse the header and all four sections; for a message that parses, check
// every name (decode, text and back), then build a query and an A reply from its first question,
// emit them, parse them back and require the same repr; and when the message itself is of repr's
// shape, parse -> emit -> parse must give the same repr, and emitting that again the same bytes.
#include <ankanet/wire/dns.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

using namespace ankanet::wire;

void require(bool ok) {
    if (!ok) std::abort();
}

void check_name(const dns::name_view& view) {
    const auto value = view.decode();
    require(value.wire_length() == view.wire_length());
    require(value.wire_length() <= dns::max_name_len);
    require(value.label_count() == view.label_count());
    require(view.encoded_length() >= 1 && view.offset() + view.encoded_length() <= view.message().size());
    const auto text = value.text();
    const auto back = dns::name::from_text(text.view());
    require(back.has_value() && *back == value);
    require(view.matches(text.view()));
    require(value.is_subdomain_of(value) && value.is_subdomain_of(dns::name{}));
}

std::vector<std::byte> emit(const dns::repr& r) {
    std::vector<std::byte> out(r.buffer_len());
    require(!r.emit(out));
    if (!out.empty()) require(r.emit(mutable_bytes{out}.first(out.size() - 1)) == ankanet::errc::buffer_too_small);
    return out;
}

/// emit -> parse gives `r` back, and its first question is `r.question`.
void round_trip(const dns::repr& r) {
    const auto bytes = emit(r);
    const auto again = dns::repr::parse(const_bytes{bytes});
    require(again.has_value() && *again == r);
    require(emit(*again) == bytes);

    std::vector<std::byte> framed(r.tcp_buffer_len());
    require(!r.emit_tcp(framed));
    const auto frame = dns::tcp::next_frame(framed);
    require(frame.has_value() && frame->consumed == framed.size());
    require(std::equal(frame->message.begin(), frame->message.end(), bytes.begin(), bytes.end()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};
    (void)dns::first_question(input);
    (void)dns::tcp::next_frame(input);

    const auto parsed = dns::message::parse(input);
    if (!parsed) return 0;
    const auto& m = *parsed;
    const auto header = m.header();
    require(m.size() <= input.size());

    // Every entry, in order; each ends where the next begins, the last where the message does.
    std::size_t end = dns::header_len;
    std::size_t questions = 0;
    for (const auto& q : m.questions()) {
        require(q.qname.offset() == end);
        check_name(q.qname);
        end = q.qname.offset() + q.qname.encoded_length() + dns::question_fixed_len;
        ++questions;
    }
    require(questions == header.qdcount());
    std::size_t records = 0;
    std::optional<dns::edns> edns;
    std::vector<dns::a_answer> a_answers;
    for (const auto& s : {m.answers(), m.authorities(), m.additionals()}) {
        for (const auto& rr : s) {
            require(rr.offset == end);
            check_name(rr.name);
            require(rr.rdata_offset + rr.rdata.size() <= m.size());
            end = rr.rdata_offset + rr.rdata.size();
            ++records;
            if (const auto address = rr.a()) a_answers.push_back({*address, rr.ttl});
            if (const auto target = rr.rdata_name()) {
                check_name(*target);
                require(target->offset() == rr.rdata_offset);
                require(target->encoded_length() == rr.rdata.size());
            }
            if (rr.is_opt()) {
                std::size_t at = 0;
                while (at < rr.rdata.size()) {
                    if (!dns::read_edns_option(rr.rdata, at)) break;
                }
                require(at <= rr.rdata.size());
                edns = dns::edns{rr.udp_payload_size(), rr.extended_rcode(), rr.edns_version(), rr.edns_flags()};
            }
        }
    }
    require(records == std::size_t{header.ancount()} + header.nscount() + header.arcount());
    require(end == m.size());

    // Rewriting the ID and flags in place changes nothing else about the message.
    std::vector<std::byte> copy(input.begin(), input.end());
    dns::packet<mutable_bytes> writable{copy};
    writable.set_id(static_cast<std::uint16_t>(~header.id()));
    writable.set_flag(dns::flag::tc, !header.tc());
    const auto edited = dns::message::parse(copy);
    require(edited.has_value() && edited->size() == m.size());
    require(edited->header().id() == static_cast<std::uint16_t>(~header.id()) && edited->header().tc() != header.tc());

    // Query and reply built from the first question.
    if (const auto q = m.first_question()) {
        const auto question = dns::question::from(*q);
        auto query = dns::repr::make_query(header.id(), question, header.flags());
        query.edns = edns;
        round_trip(query);
        {
            const auto bytes = emit(query);
            const auto back = dns::first_question(const_bytes{bytes});
            require(back.has_value() && back->matches(*q) && back->qname.decode() == question.qname);
        }

        auto reply = dns::repr::make_response(header.id(), header.flags(), question, header.rcode(), header.aa());
        for (const auto& answer : a_answers) {
            if (reply.add_answer(answer.address, answer.ttl)) break;
        }
        round_trip(reply);
        for (std::uint8_t code : {dns::rcode::nxdomain, dns::rcode::servfail, dns::rcode::refused}) {
            round_trip(dns::repr::make_response(header.id(), header.flags(), question, code));
        }
    }

    // A message of repr's own shape: parse -> emit -> parse.
    if (const auto r = dns::repr::parse(m)) round_trip(*r);
    return 0;
}
