#!/usr/bin/perl
# Verifies the DKIM signatures of a message on stdin with Mail::DKIM, asking the DNS server
# given as arguments (address, port) for keys. Prints one line per signature and the overall result.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($nameserver, $port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => [$nameserver], port => $port, udp_timeout => 5, tcp_timeout => 5, retry => 2));
my $verifier = Mail::DKIM::Verifier->new();
binmode STDIN;
local $/;
my $message = <STDIN>;
$verifier->PRINT($message);
$verifier->CLOSE;
foreach my $signature ($verifier->signatures) {
    printf "signature d=%s s=%s a=%s: %s\n", $signature->domain, $signature->selector,
        $signature->algorithm, $signature->result_detail;
}
printf "result: %s\n", $verifier->result_detail;
