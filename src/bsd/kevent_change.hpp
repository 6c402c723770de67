// Internal to src/bsd. Builds one kevent change without EV_SET: FreeBSD's EV_SET is a C compound
// literal (not ISO C++), and the field types differ between systems (NetBSD's filter and flags
// are 32-bit), so the fields are set one by one and the others, FreeBSD's ext[] included, are 0.
#pragma once

#include <sys/types.h>  // before <sys/event.h> on older BSDs

#include <sys/event.h>

#include <cstdint>

namespace evloop::detail {

inline struct kevent make_kevent(std::uintptr_t ident, int filter, unsigned flags, unsigned fflags,
                                 void* udata) noexcept {
  struct kevent kev {};
  kev.ident = ident;
  kev.filter = static_cast<decltype(kev.filter)>(filter);
  kev.flags = static_cast<decltype(kev.flags)>(flags);
  kev.fflags = static_cast<decltype(kev.fflags)>(fflags);
  kev.udata = udata;
  return kev;
}

}  // namespace evloop::detail
