/// @file
/// Seen by Doxygen only: the namespaces of other libraries that ankanet's headers specialize
/// templates in (fmt::formatter, boost::asio::associator), so the specializations have a scope.
#pragma once

/// {fmt}: ankanet's printable types specialize fmt::formatter.
namespace fmt {}
/// Boost.
namespace boost {
/// Boost.Asio: ankanet's asynchronous operations specialize boost::asio::associator.
namespace asio {}
}
