/// @file
/// ankanet::dns::local_zone — the names the gateway answers itself, before anything is forwarded.
///
/// Theory of operation.
///  * The zone is one domain (default "ankanet.internal": ICANN reserved .internal for private use
///    in 2024, so it cannot clash with a public name) holding one name per VM — the host name its DHCP
///    client sent, as `<hostname>.<domain>` → the VM's leased IPv4 address — and one for the host,
///    `host.<domain>` → the gateway address. The DHCP service calls set_name() when it binds or
///    renews a lease that carries a host name and remove_address() when the lease ends.
///  * answer(query, reply) decides, for one query message (UDP payload, or TCP payload without its
///    length prefix), one of:
///      - forward: not ours. The forwarder relays the guest's bytes untouched. This is everything
///        outside the domain except a PTR query for a known address, any opcode but QUERY, any
///        QDCOUNT but 1, and any class but IN. Nothing not ours is ever rebuilt: a peer that
///        re-synthesised upstream answers lost AAAA, SOA and PTR records and turned every error into
///        NXDOMAIN (gvisor-tap-vsock #612, #462).
///      - reply: `reply` holds our answer, authoritative (AA):
///          A (or ANY) for a known name → its address;
///          PTR for d.c.b.a.in-addr.arpa of a known address (VM or gateway) → `<name>.<domain>`;
///          any other type for a known name, or any type for the domain itself → NOERROR, no
///          answers (NODATA: the name exists, without that type);
///          an unknown name under the domain, or a name deeper than one label below it → NXDOMAIN
///          (we are authoritative, so nothing under the domain is forwarded — that would also leak
///          guests' names to the upstream resolver);
///          a domain query with a broken EDNS part → FORMERR (several OPT records, RFC 6891 §6.1.1),
///          or BADVERS for an EDNS version above 0 (§6.1.3).
///        Negative answers carry no SOA record, so resolvers do not cache them (RFC 2308 §5): a
///        name a VM takes a second later is found at once.
///      - drop: not a query we can read (message::parse failed, or QR set). Counted, no reply:
///        answering garbage can only help reflection.
///  * The reply keeps the query's ID, echoes its question byte for byte (the case as sent — some
///    clients check it), copies RD, CD and the opcode, sets QR, AA and RA (the forwarder does
///    recurse), and carries an OPT record (no options, our payload size, DO copied per RFC 3225)
///    when the query had one. A reply is at most 324 bytes (a PTR: header 12, a reverse question of
///    at most 34, the answer's fixed 12 and a target of at most 255, OPT 11; an A reply is at most
///    12 + 259 + 16 + 11 = 298), so it always fits the classic 512-byte UDP limit; a buffer of
///    max_reply_len always holds it.
///  * Names are compared ASCII case-insensitively (RFC 4343). Stored labels are lowercased, so a PTR
///    answer spells a VM's name in lowercase whatever case its DHCP client used.
///  * Host names come from guests and are checked before they become names (set_name): one DNS
///    label of letters, digits and '-' (RFC 952/1123 "LDH"), 1..63 bytes, not starting or ending
///    with '-'. A name with a dot (an FQDN in option 12), an underscore, a space, a non-ASCII byte
///    or anything else is refused (name_status::invalid), never trimmed or rewritten. The host label
///    ("host") is reserved for the gateway.
///  * One name, one VM: the first VM to hold a name keeps it while its lease lasts; a later VM
///    asking for it gets name_status::taken and no name (it may retry on renewal, after the first
///    one's lease ends). So a guest cannot steal another's name, or its traffic, by renaming itself.
///    One address, one name: set_name() for an address that already has a name replaces it
///    (the VM renamed itself).
///  * Bounded: at most max_entries VM names (config), kept in one vector reserved at construction;
///    nothing is allocated after it. Lookups scan that vector (a few hundred short labels, compared
///    length first), which costs less than hashing a guest's name once with a keyed hash.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dns.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace ankanet::dns {

namespace wdns = wire::dns;

/// The longest domain a zone may have, in wire form: room for a 63-byte label, its length octet,
/// and the domain, inside a 255-byte name.
inline constexpr std::size_t max_domain_len = wdns::max_name_len - (wdns::max_label_len + 1);
/// A reply buffer of this size always holds answer()'s reply.
inline constexpr std::size_t max_reply_len = 1024;

/// How a local_zone is set up.
struct local_zone_config {
    std::string_view domain = "ankanet.internal"; ///< the zone; at most max_domain_len in wire form
    std::string_view host_label = "host";         ///< `host_label.domain` names the gateway
    wire::ipv4_address gateway{192, 168, 64, 1};  ///< what the host name resolves to
    std::size_t max_entries = 256;                ///< VM names held at most
    std::uint32_t ttl = 5;                        ///< seconds: short, because leases move
    std::uint16_t edns_payload_size = 1232;       ///< advertised in replies that carry OPT
};

/// What answer() did with a query.
enum class zone_disposition : std::uint8_t {
    forward, ///< not ours: relay the query's bytes unchanged
    reply,   ///< our reply is in the reply buffer
    drop,    ///< not a readable query: no reply, nothing forwarded
};

/// answer()'s verdict; `length` bytes of the reply buffer hold the reply when it is `reply`.
struct zone_answer {
    zone_disposition disposition = zone_disposition::forward; ///< disposition
    std::size_t length = 0; ///< length
    std::uint8_t rcode = 0; ///< of the reply (the low 4 bits; BADVERS shows as 0 here, see edns)

    /// Memberwise equality.
    bool operator==(const zone_answer&) const noexcept = default;
};

/// Why set_name() did or did not give an address a name.
enum class name_status : std::uint8_t {
    added,     ///< the address now has this name
    unchanged, ///< it already had it
    renamed,   ///< it had another name, now replaced
    invalid,   ///< not one LDH label (see the theory of operation); nothing changed
    reserved,  ///< the gateway's label; nothing changed
    taken,     ///< another address holds it; nothing changed
    full,      ///< max_entries names are held; nothing changed
};

/// What a local_zone has done, for logs and tests.
struct local_zone_counters {
    std::uint64_t queries = 0;     ///< answer() calls
    std::uint64_t forwarded = 0;   ///< not ours
    std::uint64_t dropped = 0;     ///< unreadable (message::parse failed, or a response)
    std::uint64_t answers_a = 0;   ///< A (or ANY) answered with an address
    std::uint64_t answers_ptr = 0; ///< PTR answered with a name
    std::uint64_t nodata = 0;      ///< NOERROR without answers
    std::uint64_t nxdomain = 0;    ///< unknown names under the domain
    std::uint64_t formerr = 0;     ///< broken EDNS (FORMERR, BADVERS) in a query for the domain
    std::uint64_t reply_too_big = 0; ///< the caller's buffer was short: dropped
};

/// The local zone: VM host names and the host's name under one domain. See the theory of operation.
class local_zone {
public:
    /// A VM's name: its lowercase label and its address.
    struct entry {
        wire::ipv4_address address; ///< address
        std::array<char, wdns::max_label_len> label{}; ///< label

        /// label length
        std::size_t label_len = 0;
        /// The name.
        std::string_view name() const noexcept { return {label.data(), label_len}; }
    };

    /// A zone for `config`; errc::bad_field when the domain or host label does not parse, or the
    /// domain is the root; errc::bad_length when the domain is longer than max_domain_len.
    static result<local_zone> make(const local_zone_config& config) {
        auto domain = wdns::name::from_text(config.domain);
        if (!domain) return domain.error();
        if (domain->is_root()) return errc::bad_field;
        if (domain->wire_length() > max_domain_len) return errc::bad_length;
        if (!valid_label(config.host_label)) return errc::bad_field;
        return local_zone{config, *domain};
    }

    // --- names, as leases change ----------------------------------------------------------------

    /// Whether `hostname` may become a name: one LDH label, 1..63 bytes, no '-' at either end.
    static bool valid_label(std::string_view hostname) noexcept {
        if (hostname.empty() || hostname.size() > wdns::max_label_len) return false;
        if (hostname.front() == '-' || hostname.back() == '-') return false;
        for (char c : hostname) {
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
            if (!ok) return false;
        }
        return true;
    }

    /// Gives `address` the name `hostname` (a guest's DHCP host name option), by the rules in the
    /// theory of operation: first holder keeps a name; an address holds one name.
    name_status set_name(wire::ipv4_address address, std::string_view hostname) {
        if (!valid_label(hostname)) return name_status::invalid;
        if (iequal_text(hostname, host_label())) return name_status::reserved;
        entry* mine = find_address(address);
        if (const entry* holder = find_label(hostname)) {
            if (holder == mine) return name_status::unchanged;
            return name_status::taken;
        }
        const bool renaming = mine != nullptr;
        if (!renaming) {
            if (entries_.size() >= config_.max_entries) return name_status::full;
            entries_.push_back(entry{});
            mine = &entries_.back();
            mine->address = address;
        }
        for (std::size_t i = 0; i < hostname.size(); ++i) mine->label[i] = lower(hostname[i]);
        mine->label_len = hostname.size();
        return renaming ? name_status::renamed : name_status::added;
    }

    /// Removes the name of `address` (its lease ended); false if it had none.
    bool remove_address(wire::ipv4_address address) noexcept {
        entry* e = find_address(address);
        if (e == nullptr) return false;
        *e = entries_.back(); // order does not matter; swap-remove keeps the vector dense
        entries_.pop_back();
        return true;
    }

    /// Removes every VM name (the gateway's stays).
    void clear() noexcept { entries_.clear(); }

    /// The address `hostname` resolves to (the gateway for the host label), case-insensitively.
    std::optional<wire::ipv4_address> address_of(std::string_view hostname) const noexcept {
        if (iequal_text(hostname, host_label())) return config_.gateway;
        const entry* e = find_label(hostname);
        if (e == nullptr) return std::nullopt;
        return e->address;
    }
    /// The label `address` has (the host label for the gateway), or empty.
    std::string_view name_of(wire::ipv4_address address) const noexcept {
        if (address == config_.gateway) return host_label();
        const entry* e = find_address(address);
        return e == nullptr ? std::string_view{} : e->name();
    }

    /// The number of elements.
    std::size_t size() const noexcept { return entries_.size(); }
    /// The max entries.
    std::size_t max_entries() const noexcept { return config_.max_entries; }
    /// The domain.
    const wdns::name& domain() const noexcept { return domain_; }
    /// The gateway's label, lowercase.
    std::string_view host_label() const noexcept { return {host_label_.data(), host_label_len_}; }
    /// The gateway.
    wire::ipv4_address gateway() const noexcept { return config_.gateway; }
    /// The counters.
    const local_zone_counters& counters() const noexcept { return counters_; }

    // --- queries ----------------------------------------------------------------------------------

    /// Answers `query` into `reply` if it is ours (see the theory of operation).
    zone_answer answer(wire::const_bytes query, wire::mutable_bytes reply) noexcept {
        ++counters_.queries;
        const auto parsed = wdns::message::parse(query);
        if (!parsed) return drop();
        const auto header = parsed->header();
        if (header.qr()) return drop();
        if (header.opcode() != wdns::opcode::query || header.qdcount() != 1) return forward();
        const auto question_view = parsed->first_question();
        if (!question_view || question_view->qclass != wdns::rr_class::in) return forward();

        const auto question = wdns::question::from(*question_view);
        if (question.qname.is_subdomain_of(domain_)) return answer_in_domain(*parsed, question, reply);
        if (question.qtype == wdns::type::ptr) {
            if (const auto address = reverse_address(question.qname)) {
                const std::string_view label = name_of(*address);
                if (!label.empty()) return answer_ptr(*parsed, question, label, reply);
            }
        }
        return forward();
    }

private:
    local_zone(const local_zone_config& config, const wdns::name& domain) : config_(config), domain_(domain) {
        // The caller's text need not outlive the zone: the domain lives in domain_, the host label
        // in host_label_ (an array, so copies and moves of the zone stay self-contained).
        for (std::size_t i = 0; i < config.host_label.size(); ++i) host_label_[i] = lower(config.host_label[i]);
        host_label_len_ = config.host_label.size();
        config_.domain = {};
        config_.host_label = {};
        entries_.reserve(config.max_entries);
    }

    static char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
    static bool iequal_text(std::string_view a, std::string_view b) noexcept {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (lower(a[i]) != lower(b[i])) return false;
        }
        return true;
    }

    entry* find_address(wire::ipv4_address address) noexcept {
        for (auto& e : entries_) {
            if (e.address == address) return &e;
        }
        return nullptr;
    }
    const entry* find_address(wire::ipv4_address address) const noexcept {
        for (const auto& e : entries_) {
            if (e.address == address) return &e;
        }
        return nullptr;
    }
    const entry* find_label(std::string_view label) const noexcept {
        for (const auto& e : entries_) {
            if (iequal_text(e.name(), label)) return &e;
        }
        return nullptr;
    }
    /// The first label of a wire-form name as text (labels of a VM name are LDH, so bytes are chars).
    static std::string_view first_label(const wdns::name& n) noexcept {
        const auto wire = n.wire();
        const std::size_t len = std::to_integer<std::size_t>(wire[0]);
        return {reinterpret_cast<const char*>(wire.data() + 1), len};
    }

    /// The address `d.c.b.a.in-addr.arpa` names: four decimal labels 0..255 without leading zeros,
    /// then in-addr.arpa (any case). Anything else (shorter names, RFC 2317 classless names) is not.
    static std::optional<wire::ipv4_address> reverse_address(const wdns::name& n) noexcept {
        static const wdns::name arpa = wdns::name::from_text("in-addr.arpa").value();
        if (n.label_count() != 6 || !n.is_subdomain_of(arpa)) return std::nullopt;
        const auto wire = n.wire();
        std::uint32_t value = 0;
        std::size_t pos = 0;
        for (unsigned i = 0; i < 4; ++i) {
            const std::size_t len = std::to_integer<std::size_t>(wire[pos]);
            if (len == 0 || len > 3) return std::nullopt;
            if (len > 1 && std::to_integer<char>(wire[pos + 1]) == '0') return std::nullopt;
            std::uint32_t octet = 0;
            for (std::size_t k = 1; k <= len; ++k) {
                const char c = std::to_integer<char>(wire[pos + k]);
                if (c < '0' || c > '9') return std::nullopt;
                octet = octet * 10 + static_cast<std::uint32_t>(c - '0');
            }
            if (octet > 255) return std::nullopt;
            value |= octet << (8 * i); // the first label is the last octet
            pos += len + 1;
        }
        return wire::ipv4_address{value};
    }

    zone_answer forward() noexcept {
        ++counters_.forwarded;
        return {zone_disposition::forward, 0, 0};
    }
    zone_answer drop() noexcept {
        ++counters_.dropped;
        return {zone_disposition::drop, 0, 0};
    }

    /// The reply's OPT record, when the query had a good one: our size, version 0, DO copied.
    std::optional<wdns::edns> reply_edns(const wdns::record_view& query_opt) const noexcept {
        return wdns::edns{config_.edns_payload_size, 0, 0,
                          static_cast<std::uint16_t>(query_opt.edns_flags() & wdns::edns_dnssec_ok)};
    }

    /// Reads the query's OPT: sets `edns` for the reply, or returns the FORMERR/BADVERS reply to send.
    std::optional<zone_answer> check_edns(const wdns::message& query, const wdns::question& question,
                                          std::optional<wdns::edns>& edns, wire::mutable_bytes reply) noexcept {
        const auto opt = query.opt();
        const auto header = query.header();
        if (!opt) { // several OPT records, or one not owned by the root
            ++counters_.formerr;
            auto r = wdns::repr::make_response(header.id(), header.flags(), question, wdns::rcode::format_error, true);
            return emit(r, reply);
        }
        if (!*opt) return std::nullopt;
        edns = reply_edns(**opt);
        if ((*opt)->edns_version() != 0) {
            ++counters_.formerr;
            constexpr std::uint8_t badvers_upper = 1; // BADVERS is 16: upper 8 bits 1, header RCODE 0
            auto r = wdns::repr::make_response(header.id(), header.flags(), question, wdns::rcode::no_error, true);
            r.edns = edns;
            r.edns->extended_rcode = badvers_upper;
            return emit(r, reply);
        }
        return std::nullopt;
    }

    zone_answer answer_in_domain(const wdns::message& query, const wdns::question& question,
                                 wire::mutable_bytes reply) noexcept {
        std::optional<wdns::edns> edns;
        if (auto refused = check_edns(query, question, edns, reply)) return *refused;
        const auto header = query.header();

        // The domain itself exists (NODATA); names one label below it may; deeper ones do not.
        std::optional<wire::ipv4_address> address;
        bool exists = question.qname.label_count() == domain_.label_count();
        if (question.qname.label_count() == domain_.label_count() + 1) {
            address = address_of(first_label(question.qname));
            exists = address.has_value();
        }
        const std::uint8_t code = exists ? wdns::rcode::no_error : wdns::rcode::nxdomain;
        auto r = wdns::repr::make_response(header.id(), header.flags(), question, code, true);
        r.edns = edns;
        if (address && (question.qtype == wdns::type::a || question.qtype == wdns::type::any)) {
            (void)r.add_answer(*address, config_.ttl); // the first answer always fits
            ++counters_.answers_a;
        } else if (exists) {
            ++counters_.nodata;
        } else {
            ++counters_.nxdomain;
        }
        return emit(r, reply);
    }

    /// A PTR reply: repr writes the header and question (it has no PTR records), then we append the
    /// answer — owner a pointer to the question name, RDATA `<label>.<domain>` uncompressed — and the
    /// OPT record, and fix the counts.
    zone_answer answer_ptr(const wdns::message& query, const wdns::question& question, std::string_view label,
                           wire::mutable_bytes reply) noexcept {
        const auto header = query.header();
        std::optional<wdns::edns> edns;
        if (auto refused = check_edns(query, question, edns, reply)) return *refused;
        const auto r = wdns::repr::make_response(header.id(), header.flags(), question, wdns::rcode::no_error, true);
        const std::size_t target_len = 1 + label.size() + domain_.wire_length();
        const std::size_t answer_len = 2 + wdns::record_fixed_len + target_len;
        const std::size_t total = r.buffer_len() + answer_len + (edns ? wdns::edns::buffer_len : 0);
        if (reply.size() < total) return too_big();
        (void)r.emit(reply); // fits: checked above

        std::size_t at = r.buffer_len();
        wire::store_be16(reply, at, wdns::question_name_pointer);
        wire::store_be16(reply, at + 2, wdns::type::ptr);
        wire::store_be16(reply, at + 4, wdns::rr_class::in);
        wire::store_be32(reply, at + 6, config_.ttl);
        wire::store_be16(reply, at + 10, static_cast<std::uint16_t>(target_len)); // at most 255
        at += 2 + wdns::record_fixed_len;
        wire::store_u8(reply, at, static_cast<std::uint8_t>(label.size()));
        for (std::size_t i = 0; i < label.size(); ++i) wire::store_u8(reply, at + 1 + i, static_cast<std::uint8_t>(label[i]));
        wire::store_bytes(reply, at + 1 + label.size(), domain_.wire());
        at += target_len;
        wdns::packet<wire::mutable_bytes> out{reply};
        out.set_ancount(1);
        if (edns) {
            // The same 11 bytes repr writes for an OPT without options.
            wire::store_u8(reply, at, 0);
            wire::store_be16(reply, at + 1, wdns::type::opt);
            wire::store_be16(reply, at + 3, edns->udp_payload_size);
            wire::store_be32(reply, at + 5, edns->flags);
            wire::store_be16(reply, at + 9, 0);
            at += wdns::edns::buffer_len;
            out.set_arcount(1);
        }
        ++counters_.answers_ptr;
        return {zone_disposition::reply, at, wdns::rcode::no_error};
    }

    zone_answer emit(const wdns::repr& r, wire::mutable_bytes reply) noexcept {
        if (r.emit(reply)) return too_big();
        return {zone_disposition::reply, r.buffer_len(), static_cast<std::uint8_t>(r.flags & wdns::flag::rcode_mask)};
    }
    zone_answer too_big() noexcept {
        ++counters_.reply_too_big;
        return {zone_disposition::drop, 0, 0};
    }

    local_zone_config config_;
    std::array<char, wdns::max_label_len> host_label_{};
    std::size_t host_label_len_ = 0;
    wdns::name domain_;
    std::vector<entry> entries_;
    local_zone_counters counters_;
};

} // namespace ankanet::dns
