#include <stdio.h>
#include "base/base.h"
int main(void)
{
    printf("nexus\n");
    return 0;
}
