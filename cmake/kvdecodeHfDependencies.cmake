# What kvdecode::hf (reading Hugging Face folders: safetensors, config.json,
# tokenizer.json) needs beyond kvdecode::kvdecode: a JSON parser (nlohmann-json), a
# Unicode regex engine for tokenizer.json's pre-tokenizer patterns (PCRE2) and Unicode
# normalization (utf8proc). Included by the project and by the installed package's
# config; sets kvdecode_hf_dependencies_FOUND. Debian: nlohmann-json3-dev libpcre2-dev
# libutf8proc-dev pkgconf.
set(kvdecode_hf_dependencies_FOUND FALSE)
find_package(nlohmann_json 3 QUIET)
find_package(PkgConfig QUIET)
if(nlohmann_json_FOUND AND PKG_CONFIG_FOUND)
  if(NOT TARGET PkgConfig::kvdecode_pcre2)
    pkg_check_modules(kvdecode_pcre2 QUIET IMPORTED_TARGET GLOBAL libpcre2-8)
  endif()
  if(NOT TARGET PkgConfig::kvdecode_utf8proc)
    pkg_check_modules(kvdecode_utf8proc QUIET IMPORTED_TARGET GLOBAL libutf8proc)
  endif()
  if(TARGET PkgConfig::kvdecode_pcre2 AND TARGET PkgConfig::kvdecode_utf8proc)
    set(kvdecode_hf_dependencies_FOUND TRUE)
  endif()
endif()
