# Debian's chromium for the live console's browser test (cmd/kumi/console_test.go): chromedp drives
# it headless, as root with --no-sandbox, against a `kumi local` on 127.0.0.1.
apt_install chromium chromium
chromium --version
