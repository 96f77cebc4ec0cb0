# gVisor's runsc: gameserver/wrap runs uploaded builds under it (TestFakeUEEndToEnd, TestHostileBuild).
# Debian packages it as "runsc"; the sandbox also needs root (network namespaces), which CI has.
apt_install runsc runsc
runsc --version | sed -n 1p
