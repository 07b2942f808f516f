# Debian's xsimd 8 package exports its target with "xtl" as a link dependency but
# its config file never looks for xtl, so linking the target asks for -lxtl. The
# xsimd headers kvdecode uses need nothing from xtl: when no xtl target exists,
# stand in an empty interface target under that name.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_kvdecode_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_kvdecode_xsimd_links MATCHES "(^|;)xtl(;|$)")
    find_package(xtl QUIET CONFIG)
    if(NOT TARGET xtl)
      add_library(xtl INTERFACE IMPORTED)
    endif()
  endif()
  unset(_kvdecode_xsimd_links)
endif()
