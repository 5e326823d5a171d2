#!/usr/bin/env bash
# Runs the Kotlin layer's JUnit 4 tests on a plain JVM: no Gradle, no Android SDK.
#
#   1. cargo build --lib --bin ferry          (debug: libferry for JNA, with the test server in it;
#                                              the CLI, a second client in the multi-process tests)
#   2. kotlinc: generated bindings + facade -> target/kotlin/ferry-kotlin.jar (reused while unchanged)
#   3. kotlinc: the testing artifact (dev.ferry.testing) -> target/kotlin/ferry-testing.jar  (same)
#   4. kotlinc: tests -> target/kotlin/test-classes                           (reused while unchanged)
#   5. java org.junit.runner.JUnitCore <every *Test class>, with -Djna.library.path=target/debug
#
# The tests' HTTP servers are dev.ferry.testing.TestServer, in the test JVM.
#
# Prints JUnit's summary ("OK (N tests)") and exits non-zero when anything fails.
#
# Environment overrides (defaults in brackets):
#   KOTLIN_HOME            kotlinc distribution             [found from `kotlinc` on PATH]
#   KOTLINC, JAVA          the compiler and the JVM         [$KOTLIN_HOME/bin/kotlinc, java]
#   JNA_JAR                JNA >= 5.12                      [/usr/share/java/jna.jar]
#   COROUTINES_JAR         kotlinx-coroutines-core-jvm      [$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar]
#   KOTLIN_TEST_JAR, KOTLIN_TEST_JUNIT_JAR                  [$KOTLIN_HOME/lib/kotlin-test{,-junit}.jar]
#   JUNIT_JAR, HAMCREST_JAR                                 [/usr/share/java/{junit4,hamcrest-core}.jar]
#   FERRY_KOTLIN_BINDINGS  generated Kotlin bindings dir    [bindings/kotlin]
#   FERRY_TESTS            test classes to run, space separated (e.g. dev.ferry.DownloadTest) [all]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if [ -z "${KOTLIN_HOME:-}" ]; then
  kotlinc_on_path="$(command -v kotlinc || true)"
  if [ -z "$kotlinc_on_path" ]; then
    echo "kotlinc is not on PATH; set KOTLIN_HOME to a Kotlin compiler distribution" >&2
    exit 2
  fi
  KOTLIN_HOME="$(cd "$(dirname "$(readlink -f "$kotlinc_on_path")")/.." && pwd)"
fi
KOTLINC="${KOTLINC:-$KOTLIN_HOME/bin/kotlinc}"
JAVA="${JAVA:-java}"
JNA_JAR="${JNA_JAR:-/usr/share/java/jna.jar}"
COROUTINES_JAR="${COROUTINES_JAR:-$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar}"
KOTLIN_STDLIB_JAR="$KOTLIN_HOME/lib/kotlin-stdlib.jar"
KOTLIN_TEST_JAR="${KOTLIN_TEST_JAR:-$KOTLIN_HOME/lib/kotlin-test.jar}"
KOTLIN_TEST_JUNIT_JAR="${KOTLIN_TEST_JUNIT_JAR:-$KOTLIN_HOME/lib/kotlin-test-junit.jar}"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
bindings="${FERRY_KOTLIN_BINDINGS:-bindings/kotlin}"

for jar in "$JNA_JAR" "$COROUTINES_JAR" "$KOTLIN_STDLIB_JAR" "$KOTLIN_TEST_JAR" "$KOTLIN_TEST_JUNIT_JAR" \
  "$JUNIT_JAR" "$HAMCREST_JAR"; do
  if [ ! -f "$jar" ]; then
    echo "missing $jar (see the overrides at the top of android/test-jvm.sh)" >&2
    exit 2
  fi
done

echo "==> cargo build --lib --bin ferry"
cargo build --lib --bin ferry
lib_dir="$root/target/debug"

out="$root/target/kotlin"
mkdir -p "$out"

# A signature of the inputs: file names and contents, plus the compiler. A build is reused only
# when its recorded signature matches (this also notices deleted files, unlike timestamps).
signature() {
  local files
  files="$(find "$@" -name '*.kt' -type f | LC_ALL=C sort)"
  { echo "$files"; echo "$files" | while IFS= read -r f; do cat "$f"; done; echo "$KOTLINC"; } | cksum
}

main_jar="$out/ferry-kotlin.jar"
main_sig="$(signature "$bindings" android/core/src/main/kotlin)"
if [ -f "$main_jar" ] && [ "$(cat "$out/ferry-kotlin.sig" 2>/dev/null)" = "$main_sig" ]; then
  echo "==> bindings + facade unchanged: reusing target/kotlin/ferry-kotlin.jar"
else
  echo "==> kotlinc: bindings + facade -> target/kotlin/ferry-kotlin.jar"
  rm -f "$main_jar" "$out/ferry-kotlin.sig"
  # shellcheck disable=SC2046
  "$KOTLINC" -classpath "$JNA_JAR:$COROUTINES_JAR" -d "$main_jar" \
    $(find "$bindings" android/core/src/main/kotlin -name '*.kt' -type f | LC_ALL=C sort)
  echo "$main_sig" > "$out/ferry-kotlin.sig"
fi

testing_jar="$out/ferry-testing.jar"
testing_sig="$( { echo "$main_sig"; signature android/testing/src/main/kotlin; } | cksum)"
if [ -f "$testing_jar" ] && [ "$(cat "$out/ferry-testing.sig" 2>/dev/null)" = "$testing_sig" ]; then
  echo "==> testing artifact unchanged: reusing target/kotlin/ferry-testing.jar"
else
  echo "==> kotlinc: testing artifact -> target/kotlin/ferry-testing.jar"
  rm -f "$testing_jar" "$out/ferry-testing.sig"
  # shellcheck disable=SC2046
  "$KOTLINC" -classpath "$main_jar:$JNA_JAR:$COROUTINES_JAR" -d "$testing_jar" \
    $(find android/testing/src/main/kotlin -name '*.kt' -type f | LC_ALL=C sort)
  echo "$testing_sig" > "$out/ferry-testing.sig"
fi

test_classes="$out/test-classes"
test_sig="$( { echo "$testing_sig"; signature android/core/src/test/kotlin; } | cksum)"
if [ -d "$test_classes" ] && [ "$(cat "$out/test-classes.sig" 2>/dev/null)" = "$test_sig" ]; then
  echo "==> tests unchanged: reusing target/kotlin/test-classes"
else
  echo "==> kotlinc: tests -> target/kotlin/test-classes"
  rm -rf "$test_classes" "$out/test-classes.sig"
  # -Xfriend-paths lets the tests see the facade's `internal` members, as Gradle does.
  # shellcheck disable=SC2046
  "$KOTLINC" -classpath "$main_jar:$testing_jar:$JNA_JAR:$COROUTINES_JAR:$KOTLIN_TEST_JAR:$KOTLIN_TEST_JUNIT_JAR:$JUNIT_JAR:$HAMCREST_JAR" \
    -Xfriend-paths="$main_jar" -d "$test_classes" \
    $(find android/core/src/test/kotlin -name '*.kt' -type f | LC_ALL=C sort)
  echo "$test_sig" > "$out/test-classes.sig"
fi

if [ -n "${FERRY_TESTS:-}" ]; then
  tests="$FERRY_TESTS"
else
  tests="$(cd "$test_classes" && find . -name '*Test.class' ! -name '*$*' | sed -e 's|^\./||' -e 's|\.class$||' -e 's|/|.|g' | LC_ALL=C sort | tr '\n' ' ')"
fi
if [ -z "$tests" ]; then
  echo "no test classes found under target/kotlin/test-classes" >&2
  exit 1
fi

echo "==> JUnit: $tests"
classpath="$test_classes:$main_jar:$testing_jar:$JNA_JAR:$COROUTINES_JAR:$KOTLIN_STDLIB_JAR:$KOTLIN_TEST_JAR:$KOTLIN_TEST_JUNIT_JAR:$JUNIT_JAR:$HAMCREST_JAR"
# `ferry get` and `ferry list`, run by the multi-process tests as other clients (not as servers).
export FERRY_BIN="$lib_dir/ferry"
# shellcheck disable=SC2086
exec "$JAVA" -Djna.library.path="$lib_dir" -cp "$classpath" org.junit.runner.JUnitCore $tests
