// The version find_package reported is the version the headers state, reached
// through the umbrella header.
#include <kvdecode/kvdecode.hpp>

#include <cstdio>

int main() {
    const bool ok = kvdecode::version() == KVDECODE_PACKAGE_VERSION;
    std::printf("consumer_version: headers %s, package %s\n", KVDECODE_VERSION_STRING, KVDECODE_PACKAGE_VERSION);
    return ok ? 0 : 1;
}
