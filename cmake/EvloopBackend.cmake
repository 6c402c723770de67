# Resolves EVLOOP_BACKEND (auto|epoll|kqueue) to EVLOOP_BACKEND_RESOLVED and the backend's folder
# (EVLOOP_BACKEND_DIR: src/linux or src/bsd).
# On Linux the kqueue backend builds against libkqueue, found with pkg-config: set
# EVLOOP_LIBKQUEUE_PREFIX=PREFIX (or PKG_CONFIG_PATH=PREFIX/lib/pkgconfig). Its headers come in as
# system headers (-isystem PREFIX/include/kqueue, as for every imported target), so -Werror builds
# are not broken by warnings in <sys/event.h>; binaries get an rpath to find libkqueue.so.
set(EVLOOP_LIBKQUEUE_PREFIX "" CACHE PATH "Install prefix of libkqueue (kqueue backend on Linux)")

if(EVLOOP_BACKEND STREQUAL "auto")
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(EVLOOP_BACKEND_RESOLVED epoll)
  else()
    set(EVLOOP_BACKEND_RESOLVED kqueue)
  endif()
elseif(EVLOOP_BACKEND MATCHES "^(epoll|kqueue)$")
  set(EVLOOP_BACKEND_RESOLVED ${EVLOOP_BACKEND})
else()
  message(FATAL_ERROR "EVLOOP_BACKEND must be auto, epoll or kqueue (got '${EVLOOP_BACKEND}')")
endif()

if(EVLOOP_BACKEND_RESOLVED STREQUAL "epoll")
  if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
    message(FATAL_ERROR "EVLOOP_BACKEND=epoll needs Linux (this is ${CMAKE_SYSTEM_NAME})")
  endif()
  set(EVLOOP_BACKEND_DIR linux)
else()
  set(EVLOOP_BACKEND_DIR bsd)
  if(NOT CMAKE_SYSTEM_NAME MATCHES "BSD|Darwin")
    # Not a BSD: the kqueue API comes from libkqueue.
    if(EVLOOP_LIBKQUEUE_PREFIX)
      set(ENV{PKG_CONFIG_PATH} "${EVLOOP_LIBKQUEUE_PREFIX}/lib/pkgconfig:$ENV{PKG_CONFIG_PATH}")
    endif()
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(LIBKQUEUE IMPORTED_TARGET libkqueue)
    if(NOT LIBKQUEUE_FOUND)
      message(FATAL_ERROR "EVLOOP_BACKEND=kqueue on ${CMAKE_SYSTEM_NAME} needs libkqueue: install it "
                          "and pass -DEVLOOP_LIBKQUEUE_PREFIX=<its prefix> (or set PKG_CONFIG_PATH)")
    endif()
    set(EVLOOP_NEEDS_LIBKQUEUE ON)
    # Installed binaries (and a shared libevloop) keep the path to libkqueue.so; the build tree
    # gets it anyway, CMake adds the directories of linked shared libraries to the build rpath.
    set(CMAKE_INSTALL_RPATH_USE_LINK_PATH ON)
    message(STATUS "evloop: libkqueue ${LIBKQUEUE_VERSION} from ${LIBKQUEUE_LIBDIR}")
  endif()
endif()
message(STATUS "evloop backend: ${EVLOOP_BACKEND_RESOLVED} (src/${EVLOOP_BACKEND_DIR})")
