#include "outbound.h"
