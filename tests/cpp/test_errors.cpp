#include <gtest/gtest.h>

#include "support/cases.h"

TEST(Placeholder, CasesLoad) { EXPECT_FALSE(gka::test::cases_load().empty()); }
