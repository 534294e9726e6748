-- Reserved for issue 18's migration (owners' rules), written on another branch; dropped when that one lands.
SELECT 1;
